// odkit serve web page: plain JS, no build step, no network beyond this server.
"use strict";
const PALETTE = [[230,25,75],[60,180,75],[255,225,25],[0,130,200],[245,130,48],[145,30,180],
  [70,240,240],[240,50,230],[210,245,60],[250,190,190],[0,128,128],[170,110,40]];  // as odkit.drawing
const $ = (id) => document.getElementById(id);
const results = [];  // {card, frame, detections, info}
let models = [];

function color(classId) { const c = PALETTE[classId % PALETTE.length]; return `rgb(${c[0]},${c[1]},${c[2]})`; }
function threshold() { return parseFloat($("threshold").value); }

function drawBoxes(r) {
  r.frame.querySelectorAll(".odkit-box").forEach((el) => el.remove());
  const t = threshold();
  const shown = r.detections.filter((d) => d.score >= t);
  for (const d of shown) {
    const [ymin, xmin, ymax, xmax] = d.box;
    const box = document.createElement("div");
    box.className = "odkit-box" + (ymin < 0.08 ? " low" : "");
    box.dataset.className = d.class_name;
    box.dataset.score = d.score.toFixed(3);
    box.style.setProperty("--c", color(d.class_id));
    Object.assign(box.style, {left: `${xmin * 100}%`, top: `${ymin * 100}%`,
      width: `${(xmax - xmin) * 100}%`, height: `${(ymax - ymin) * 100}%`});
    const label = document.createElement("span");
    label.className = "odkit-label";
    label.textContent = `${d.class_name} ${Math.round(d.score * 100)}%`;
    box.appendChild(label);
    r.frame.appendChild(box);
  }
  r.caption.textContent = `${r.name}: ${shown.length} of ${r.detections.length} detection(s) shown` +
    (r.info ? `, ${r.info}` : "");
}

async function detect(file) {
  const card = document.createElement("div");
  card.className = "card";
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.alt = file.name;
  img.src = URL.createObjectURL(file);
  frame.appendChild(img);
  const caption = document.createElement("div");
  caption.className = "caption";
  caption.textContent = `${file.name}: detecting...`;
  card.append(frame, caption);
  $("results").prepend(card);
  const model = $("model").value;
  const body = new FormData();
  body.append("image", file, file.name);
  const t0 = performance.now();
  try {
    const resp = await fetch(`v1/models/${encodeURIComponent(model)}:detect?min_score=0.01&max_boxes=100`,
      {method: "POST", body});
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error || resp.statusText);
    const rt = performance.now() - t0;
    const r = {card, frame, caption, name: file.name, detections: data[0].detections,
      info: `${data[0].width}x${data[0].height}, ${model}, server ${resp.headers.get("X-Odkit-Latency-Ms")} ms, ` +
            `round trip ${rt.toFixed(0)} ms`};
    results.push(r);
    card.dataset.done = "1";
    drawBoxes(r);
  } catch (err) {
    caption.innerHTML = "";
    const e = document.createElement("span");
    e.className = "error";
    e.textContent = `${file.name}: ${err.message}`;
    caption.appendChild(e);
    card.dataset.done = "error";
  }
}

function handleFiles(files) {
  const list = Array.from(files).filter((f) => !f.type || f.type.startsWith("image/"));
  $("status").textContent = list.length ? `${list.length} image(s) sent` : "no image files in that selection";
  list.forEach(detect);
}

async function init() {
  try {
    const resp = await fetch("healthz");
    models = (await resp.json()).models;
  } catch (err) { $("status").textContent = `cannot reach the server: ${err.message}`; return; }
  for (const m of models) {
    const opt = document.createElement("option");
    opt.value = m.name; opt.textContent = m.name;
    $("model").appendChild(opt);
  }
  const showClasses = () => {
    const m = models.find((x) => x.name === $("model").value);
    $("classes").textContent = m ? `classes: ${m.classes.map((c) => c.name).join(", ")}` : "";
  };
  $("model").addEventListener("change", showClasses);
  showClasses();
  document.body.dataset.ready = "1";
}

$("threshold").addEventListener("input", () => {
  $("threshold-value").textContent = threshold().toFixed(2);
  results.forEach(drawBoxes);  // redraw locally, no new request
});
$("files").addEventListener("change", (e) => { handleFiles(e.target.files); e.target.value = ""; });
$("camera").addEventListener("change", (e) => { handleFiles(e.target.files); e.target.value = ""; });
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => handleFiles(e.dataTransfer.files));
init();
