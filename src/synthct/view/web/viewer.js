// synthct view: CT, sCT, MRI echoes, difference, uncertainty and audit flags in NiiVue.
// Coordinates: synthct speaks LPS mm; NiiVue speaks RAS mm (the layers are NIfTI in RAS), so
// LPS (L, P, S) <-> RAS (-L, -P, S). Every conversion goes through lpsToRas / rasToLps.
// Two modes: served (fetch the catalogue and layers with the session token) and embedded (a
// self-contained export: window.SYNTHCT_EMBED holds the catalogue and base64 layers).
/* global niivue */
(function () {
  "use strict";
  const embed = window.SYNTHCT_EMBED || null;
  const token = new URLSearchParams(window.location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  const state = {
    catalogue: null, caseIndex: 0, layers: [], preset: null, edit: false,
    ready: false, ttiMs: null, label: 1, names: {}, points: [], tool: "off",
  };

  const lpsToRas = (p) => [-p[0], -p[1], p[2]];
  const rasToLps = (p) => [-p[0], -p[1], p[2]];
  const fmt = (v, d = 1) => (v === null || v === undefined ? "–" :
    typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(d)) : typeof v === "boolean" ? (v ? "yes" : "no") : String(v));

  function setStatus(text) { $("status").textContent = text; }

  async function api(path, options = {}) {
    const headers = Object.assign({ "X-Synthct-Token": token }, options.headers || {});
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }

  function b64ToBuffer(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function bufferToB64(bytes) {
    let out = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      out += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(out);
  }

  async function layerBuffer(caseIndex, name) {
    if (embed) return b64ToBuffer(embed.volumes[name]);
    const r = await api(`api/volume/${caseIndex}/${encodeURIComponent(name)}.nii`);
    return r.arrayBuffer();
  }

  // How each kind of layer looks at first.
  function layerStyle(layer, first) {
    const preset = state.catalogue.presets[state.preset];
    switch (layer.kind) {
      case "hu": return { colormap: "gray", cal_min: preset[0], cal_max: preset[1], opacity: first ? 1 : 0 };
      case "mr": return { colormap: "gray", opacity: 0 };
      case "difference": return { colormap: "warm", colormapNegative: "winter", cal_min: 50, cal_max: 500, opacity: 0 };
      case "sd": return { colormap: "hot", opacity: 0 };
      case "label":
        return layer.name.startsWith("flags")
          ? { colormap: "red", cal_min: 0.5, cal_max: 1, opacity: 0.5 }
          : { colormap: "green", cal_min: 0.5, cal_max: 1, opacity: 0.35 };
      default: return { colormap: "gray", opacity: 0 };
    }
  }

  const nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1],
    isRadiologicalConvention: true,
    multiplanarShowRender: niivue.SHOW_RENDER.NEVER,
    show3Dcrosshair: true,
    crosshairColor: [1, 0.85, 0, 0.8],
    crosshairGap: 10,
    crosshairWidth: 1,
    isColorbar: false,
    loadingText: "loading",
    dragAndDropEnabled: false,
  });

  function crosshairLPS() {
    const mm = nv.frac2mm(nv.scene.crosshairPos);
    return rasToLps([mm[0], mm[1], mm[2]]);
  }

  function showLocation() {
    const lps = crosshairLPS();
    const values = state.layers.map((layer, n) => {
      const vol = nv.volumes[n];
      if (!vol || vol.opacity === 0) return null;
      const vox = vol.mm2vox(lpsToRas(lps));
      const v = vol.getValue(vox[0], vox[1], vox[2]);
      return `${layer.name} ${fmt(v, 0)}`;
    }).filter(Boolean);
    $("location").textContent =
      `crosshair LPS mm: ${lps.map((v) => v.toFixed(1)).join(", ")}   ${values.join("   ")}`;
  }

  function centreOn(lps) {
    nv.scene.crosshairPos = nv.mm2frac(lpsToRas(lps));
    nv.drawScene();
    nv.createOnLocationChange();
    showLocation();
  }

  function applyPreset(name) {
    state.preset = name;
    const [lo, hi] = state.catalogue.presets[name];
    state.layers.forEach((layer, n) => {
      if (layer.kind === "hu" && nv.volumes[n]) {
        nv.volumes[n].cal_min = lo;
        nv.volumes[n].cal_max = hi;
      }
    });
    for (const b of $("presets").children) b.classList.toggle("active", b.dataset.preset === name);
    nv.updateGLVolume();
  }

  function setOpacity(n, value) {
    nv.setOpacity(n, value);
    const slider = document.querySelector(`#layers input[data-index="${n}"]`);
    if (slider) slider.value = String(value);
    showLocation();
  }

  function showOnly(n) {
    // Show one greyscale layer (CT, sCT or an echo) and hide the other greyscale ones.
    state.layers.forEach((layer, m) => {
      if (layer.kind === "hu" || layer.kind === "mr") setOpacity(m, m === n ? 1 : 0);
    });
  }

  function buildLayerPanel() {
    const panel = $("layers");
    panel.replaceChildren();
    state.layers.forEach((layer, n) => {
      if (!nv.volumes[n]) return;
      const row = document.createElement("div");
      row.className = "layer";
      const name = document.createElement("button");
      name.textContent = layer.name;
      name.title = `show ${layer.name} alone among the greyscale layers`;
      name.dataset.layer = layer.name;
      name.addEventListener("click", () => (layer.kind === "hu" || layer.kind === "mr") ? showOnly(n) : setOpacity(n, nv.volumes[n].opacity > 0 ? 0 : 0.6));
      const slider = document.createElement("input");
      Object.assign(slider, { type: "range", min: 0, max: 1, step: 0.05, value: nv.volumes[n].opacity });
      slider.dataset.index = String(n);
      slider.setAttribute("aria-label", `opacity of ${layer.name}`);
      slider.addEventListener("input", () => setOpacity(n, Number(slider.value)));
      row.append(name, slider);
      panel.append(row);
    });
  }

  function buildTable(table, rows, columns, onClick) {
    const head = table.querySelector("thead");
    const body = table.querySelector("tbody");
    head.replaceChildren();
    body.replaceChildren();
    const tr = document.createElement("tr");
    for (const [, title] of columns) {
      const th = document.createElement("th");
      th.textContent = title;
      tr.append(th);
    }
    head.append(tr);
    rows.forEach((row) => {
      const r = document.createElement("tr");
      for (const [key] of columns) {
        const td = document.createElement("td");
        const v = key === "centre" ? row.centre_lps_mm.map((x) => fmt(x)).join(", ") : row[key];
        td.textContent = fmt(v);
        if (typeof v === "boolean") td.className = v ? "yes" : "no";
        r.append(td);
      }
      r.addEventListener("click", () => {
        for (const other of table.querySelectorAll("tr.selected")) other.classList.remove("selected");
        r.classList.add("selected");
        onClick(row);
      });
      body.append(r);
    });
  }

  const LESION_COLUMNS = [
    ["source", "run"], ["lesion_id", "id"], ["lesion_name", "name"],
    ["ct_mean_hu", "CT HU"], ["sct_mean_hu", "sCT HU"],
    ["ct_diameter_axial_mm", "CT ax mm"], ["sct_diameter_axial_mm", "sCT ax mm"],
    ["ct_diameter_sagittal_mm", "CT sag mm"], ["sct_diameter_sagittal_mm", "sCT sag mm"],
    ["ct_visible", "CT visible"], ["sct_visible", "sCT visible"],
    ["calcification_grade", "grade"], ["audit_flagged", "flagged"], ["centre", "centre LPS mm"],
  ];
  const FLAG_COLUMNS = [
    ["source", "run"], ["flag_id", "id"], ["volume_mm3", "mm³"], ["peak_score", "score"],
    ["signals", "signals"], ["true_discrepancy", "true discrepancy"], ["centre", "centre LPS mm"],
  ];

  function buildTables(c) {
    const lesions = c.lesions.filter((r) => r.centre_lps_mm.every((v) => v !== null));
    buildTable($("lesions"), lesions, LESION_COLUMNS, (row) => centreOn(row.centre_lps_mm));
    const flags = c.flags.filter((r) => r.centre_lps_mm.every((v) => v !== null));
    buildTable($("flags"), flags, FLAG_COLUMNS, (row) => centreOn(row.centre_lps_mm));
  }

  async function readLayers(index, layers, offset) {
    const buffers = await Promise.all(layers.map((l) => layerBuffer(index, l.name)));
    return Promise.all(layers.map((layer, n) => {
      const head = new Uint8Array(buffers[n], 0, 2);
      const file = `${layer.name}.nii${head[0] === 0x1f && head[1] === 0x8b ? ".gz" : ""}`;
      return niivue.NVImage.loadFromUrl(Object.assign(
        { url: file, name: file, buffer: buffers[n] }, layerStyle(layer, offset + n === 0)));
    }));
  }

  // NiiVue refreshes every layer on each change (slow in software WebGL on large grids), so
  // layers are added with refreshes held back; hidden layers need none until shown.
  function withoutRefresh(change) {
    const refresh = nv.updateGLVolume;
    nv.updateGLVolume = () => {};
    try { change(); } finally { nv.updateGLVolume = refresh; }
  }

  // The CT and the label layers after it are shown at once; the hidden layers (sCT, echoes,
  // difference, SD maps) load right after the page is ready.
  async function loadCase(index) {
    const t0 = performance.now();
    const load = (state.loading = {});
    state.ready = false;
    state.allLoaded = false;
    state.caseIndex = index;
    const c = state.catalogue.cases[index];
    $("case-title").textContent = c.case_id;
    setStatus(`loading ${c.layers.length} layers…`);
    state.layers = c.layers;
    let eager = 1;
    while (eager < c.layers.length && c.layers[eager].kind === "label") eager++;
    const first = await readLayers(index, c.layers.slice(0, eager), 0);
    if (state.loading !== load) return;
    withoutRefresh(() => {
      while (nv.volumes.length) nv.removeVolume(nv.volumes[nv.volumes.length - 1]);
      if (state.edit) nv.closeDrawing();
      for (const image of first) nv.addVolume(image);
    });
    applyPreset(state.preset);
    buildLayerPanel();
    buildTables(c);
    const centred = c.lesions.find((r) => r.centre_lps_mm.every((v) => v !== null));
    if (centred) centreOn(centred.centre_lps_mm); else showLocation();
    state.ready = true;
    state.loadMs = performance.now() - t0;
    if (state.ttiMs === null) state.ttiMs = performance.now();
    setStatus(`ready; loading ${c.layers.length - eager} more layers…`);
    const rest = await readLayers(index, c.layers.slice(eager), eager);
    if (state.loading !== load) return;
    withoutRefresh(() => { for (const image of rest) nv.addVolume(image); });
    buildLayerPanel();
    state.allLoaded = true;
    state.allLoadedMs = performance.now() - t0;
    if (state.allLoadedAt === undefined) state.allLoadedAt = performance.now();
    setStatus(`ready (${c.layers.length} layers, ${(state.allLoadedMs / 1000).toFixed(2)} s)`);
  }

  // -- annotation ---------------------------------------------------------------------------------
  function setTool(tool) {
    state.tool = tool;
    for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === tool);
    if (tool === "off") { nv.setDrawingEnabled(false); return; }
    if (!nv.drawBitmap) nv.createEmptyDrawing();
    nv.setDrawingEnabled(true);
    nv.setPenValue(tool === "erase" ? 0 : state.label, true);
    state.names[state.label] = $("lesion-name").value || `lesion-${state.label}`;
    listAnnotations();
  }

  function listAnnotations() {
    const list = $("annotations");
    list.replaceChildren();
    for (const [label, name] of Object.entries(state.names)) {
      const li = document.createElement("li");
      li.textContent = `ROI ${label}: ${name}`;
      list.append(li);
    }
    for (const p of state.points) {
      const li = document.createElement("li");
      li.textContent = `point: ${p.name} at ${p.center_lps_mm.map((v) => v.toFixed(1)).join(", ")} r ${p.radius_mm} mm`;
      list.append(li);
    }
  }

  function drawingBytes() {
    if (!nv.drawBitmap || !nv.drawBitmap.some((v) => v > 0)) return Promise.resolve(null);
    return nv.saveImage({ filename: "", isSaveDrawing: true, volumeByIndex: 0 });
  }

  async function save() {
    state.names[state.label] = $("lesion-name").value || state.names[state.label];
    const bytes = await drawingBytes();
    const body = { drawing: bytes ? bufferToB64(bytes) : null, names: state.names, points: state.points };
    setStatus("saving…");
    try {
      const r = await api(`api/annotation/${state.caseIndex}`, {
        method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
      });
      const saved = await r.json();
      state.saved = saved;
      $("saved").textContent = `saved ${saved.label_map}; lesion points: ${saved.lesion_points}`;
      $("validate").disabled = false;
      setStatus("saved");
    } catch (e) { setStatus(`save failed: ${e.message}`); }
  }

  async function validate() {
    setStatus("validating…");
    try {
      const r = await api(`api/validate/${state.caseIndex}`, { method: "POST", body: "{}" });
      const result = await r.json();
      const c = state.catalogue.cases[state.caseIndex];
      c.lesions = c.lesions.filter((row) => row.source !== "annotation").concat(result.lesions);
      buildTables(c);
      state.validated = result.lesions;
      setStatus(`validated: ${result.lesions.length} lesion(s)`);
    } catch (e) { setStatus(`validation failed: ${e.message}`); }
  }

  function setUpEditing() {
    $("edit-tools").hidden = false;
    for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => setTool(b.dataset.tool));
    $("new-lesion").addEventListener("click", () => {
      state.label = Math.max(0, ...Object.keys(state.names).map(Number)) + 1;
      $("lesion-name").value = `lesion-${state.label}`;
      setTool("draw");
    });
    $("lesion-name").addEventListener("change", () => {
      if (state.names[state.label] !== undefined) state.names[state.label] = $("lesion-name").value;
      listAnnotations();
    });
    $("add-point").addEventListener("click", () => {
      state.points.push({ center_lps_mm: crosshairLPS(), radius_mm: Number($("point-radius").value), name: $("lesion-name").value });
      listAnnotations();
    });
    $("save").addEventListener("click", save);
    $("validate").addEventListener("click", validate);
  }

  async function main() {
    try {
      nv.onLocationChange = showLocation;
      await nv.attachToCanvas($("gl"));
      nv.setSliceType(nv.sliceTypeMultiplanar);
      state.catalogue = embed ? embed.catalogue : await (await api("api/catalogue")).json();
      state.edit = !embed && state.catalogue.edit;
      state.preset = state.catalogue.default_preset;
      $("mode").textContent = embed ? "(export)" : state.edit ? "(edit)" : "(read-only)";
      for (const name of Object.keys(state.catalogue.presets)) {
        const b = document.createElement("button");
        b.textContent = name;
        b.dataset.preset = name;
        b.addEventListener("click", () => applyPreset(name));
        $("presets").append(b);
      }
      const select = $("cases");
      state.catalogue.cases.forEach((c, n) => select.add(new Option(c.case_id, String(n))));
      select.value = "0";
      select.addEventListener("change", () => loadCase(Number(select.value)));
      if (state.edit) setUpEditing();
      await loadCase(0);
    } catch (e) {
      setStatus(`error: ${e.message}`);
      console.error(e);
    }
  }

  window.synthctView = {
    nv, state, centreOn, crosshairLPS, applyPreset, showOnly, setTool, save, validate, loadCase,
    lpsToRas, rasToLps,
  };
  main();
})();
