// The page's small DOM helpers: elements by id, text elements, the status line, colours, downloads.

export const $ = (id) => document.getElementById(id);

export const status = (text, error = false) => { $('status').textContent = text; $('status').className = error ? 'error' : ''; };

export function text(tag, content, className) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className) el.className = className;
  return el;
}

export const took = (ms, reused) => `${Math.round(ms)} ms${reused ? ', labels only: the image encoder did not run again' : ''}`;
export const rgb = (colours, k) => `rgb(${colours[3 * k]},${colours[3 * k + 1]},${colours[3 * k + 2]})`;

export function saveBlob(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export function download(canvas, name) {
  canvas.toBlob((blob) => saveBlob(blob, name), 'image/png');
}
