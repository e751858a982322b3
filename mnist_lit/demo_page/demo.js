// The draw-a-digit page: pointer events (mouse, pen, touch) draw on the canvas; after every stroke the
// drawing goes to the server as a PNG, and its answer (digit, ten probabilities, the 28x28 image the
// network received) is shown. Nothing is loaded from anywhere but this server.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const prepared = document.getElementById("prepared");
const digitView = document.getElementById("digit");
const statusView = document.getElementById("status");
const bars = [];
let stroke = null; // the pointer drawing now: {id, x, y}
let sent = 0; // requests sent; an answer older than the latest drawing is ignored
let drawn = false;

const LINE_WIDTH = 24; // of the 280-pixel canvas: about 2.5 px once scaled into MNIST's 20x20 box

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
  sent += 1; // an answer still on its way belongs to the erased drawing
  showAnswer(null);
  statusView.textContent = "Draw one digit, large, in the box.";
}

function buildBars(classes) {
  const holder = document.getElementById("bars");
  for (let d = 0; d < classes.length; d += 1) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.digit = String(d);
    row.innerHTML = '<span class="name"></span><div class="track"><div class="fill"></div></div><span class="value"></span>';
    row.querySelector(".name").textContent = classes[d];
    holder.appendChild(row);
    bars.push(row);
  }
}

function showAnswer(answer) {
  const image = prepared.getContext("2d");
  const pixels = image.createImageData(28, 28);
  for (let i = 0; i < 28 * 28; i += 1) {
    const level = answer ? answer.image[i] : 0;
    pixels.data.set([level, level, level, 255], 4 * i);
  }
  image.putImageData(pixels, 0, 0);
  const reading = answer && !answer.blank;
  digitView.textContent = reading ? answer.class : "\u2013";
  bars.forEach((row, d) => {
    const p = reading ? answer.probabilities[d] : 0;
    row.dataset.probability = reading ? String(p) : "";
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector(".value").textContent = reading ? p.toFixed(3) : "";
    row.classList.toggle("top", reading && d === answer.digit);
  });
}

function drawingPng() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

async function post(url, body) {
  const response = await fetch(url, { method: "POST", headers: { "Content-Type": "image/png" }, body });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

async function read() {
  const number = (sent += 1);
  statusView.textContent = "Reading\u2026";
  try {
    const answer = await post("/api/predict", await drawingPng());
    if (number !== sent) return; // a newer stroke (or Clear) came since
    showAnswer(answer);
    statusView.textContent = answer.blank ? "Nothing drawn yet." : "Add a stroke, or Clear.";
    document.body.dataset.answered = String(number); // one more answer shown (the tests wait for this)
  } catch (error) {
    if (number === sent) statusView.textContent = `The server refused: ${error.message}`;
  }
}

async function save(label) {
  if (!drawn) {
    statusView.textContent = "Draw a digit first.";
    return;
  }
  try {
    const answer = await post(`/api/save?label=${label}`, await drawingPng());
    clearPad();
    statusView.textContent = `Saved as ${label}: ${answer.saved}`;
  } catch (error) {
    statusView.textContent = `Not saved: ${error.message}`;
  }
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: ((event.clientX - box.left) * pad.width) / box.width, y: ((event.clientY - box.top) * pad.height) / box.height };
}

function lineTo(event) {
  const to = point(event);
  ink.beginPath();
  ink.moveTo(stroke.x, stroke.y);
  ink.lineTo(to.x, to.y);
  ink.stroke();
  stroke.x = to.x;
  stroke.y = to.y;
}

pad.addEventListener("pointerdown", (event) => {
  if (stroke !== null || event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  pad.dataset.pointer = event.pointerType; // mouse, pen or touch: the last one that drew
  stroke = { id: event.pointerId, ...point(event) };
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.lineWidth = LINE_WIDTH;
  ink.strokeStyle = "#000";
  ink.beginPath();
  ink.arc(stroke.x, stroke.y, LINE_WIDTH / 2, 0, 2 * Math.PI);
  ink.fillStyle = "#000";
  ink.fill(); // a tap leaves a dot
  drawn = true;
});

pad.addEventListener("pointermove", (event) => {
  if (stroke === null || event.pointerId !== stroke.id) return;
  // A fast pen or finger delivers several positions per frame; draw through all of them.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  (events.length ? events : [event]).forEach(lineTo);
});

function endStroke(event) {
  if (stroke === null || event.pointerId !== stroke.id) return;
  stroke = null;
  read();
}

pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
document.getElementById("clear").addEventListener("click", clearPad);

async function start() {
  const info = await (await fetch("/api/info")).json();
  buildBars(info.classes);
  clearPad();
  document.getElementById("model").textContent = `Model: ${info.model}`;
  if (info.save) {
    const labels = document.getElementById("labels");
    for (let d = 0; d < info.classes.length; d += 1) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = info.classes[d];
      button.title = `save this drawing as ${info.classes[d]}`;
      button.addEventListener("click", () => save(d));
      labels.appendChild(button);
    }
    document.getElementById("save").hidden = false;
  }
  document.body.dataset.ready = "true";
}

start();
