// Camera mode: frames segmented one after another (the next frame is taken when the last one is
// painted, so a slow backend lowers the frame rate rather than queueing frames), by the labels as
// they are typed.
import { paintLabels } from './pkg/worker.js';
import { $, text, rgb, status } from './ui.js';

/** `ready()`: whether a model is loaded; `segmentFrame(bitmap, labels)`: `{result, ms}`. */
export function cameraButton({ ready, segmentFrame }) {
  const camera = { stream: null, video: null, painted: 0, times: [] };

  async function startCamera() {
    if (!ready()) return status('Load a model first (step 1).', true);
    try {
      camera.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (e) {
      return status(`No camera: ${e.message}`, true);
    }
    camera.video = Object.assign(document.createElement('video'), { muted: true, playsInline: true, srcObject: camera.stream });
    await camera.video.play();
    Object.assign(camera, { painted: 0, times: [] });
    $('camera').setAttribute('aria-pressed', 'true');
    $('camera').textContent = 'Stop the camera';
    $('camera-view').hidden = false;
    $('camera-status').textContent = 'Segmenting the camera…';
    cameraLoop();
  }

  function stopCamera() {
    camera.stream?.getTracks().forEach((t) => t.stop());
    camera.stream = null;
    $('camera').setAttribute('aria-pressed', 'false');
    $('camera').textContent = 'Camera';
    $('camera-status').textContent = 'Camera stopped.';
  }

  async function cameraLoop() {
    const canvas = $('camera-canvas');
    while (camera.stream) {
      const { videoWidth: w, videoHeight: h } = camera.video;
      if (!w || !h) { await new Promise((ok) => setTimeout(ok, 50)); continue; }
      // The frame as shown, kept here; a copy goes to the worker.
      const frame = await createImageBitmap(camera.video);
      const sent = frame; // the worker entry sends its own copy
      const labels = $('labels').value;
      try {
        const reply = await segmentFrame(sent, labels);
        if (!camera.stream) break;
        const r = reply.result;
        Object.assign(canvas, { width: r.width, height: r.height });
        const ctx = canvas.getContext('2d');
        ctx.drawImage(frame, 0, 0, r.width, r.height);
        ctx.putImageData(paintLabels(r, { photo: ctx.getImageData(0, 0, r.width, r.height), opacity: 0.5 }), 0, 0);
        camera.painted++;
        camera.times.push(performance.now());
        if (camera.times.length > 10) camera.times.shift();
        const span = (camera.times.at(-1) - camera.times[0]) / 1000;
        const fps = camera.times.length > 1 ? (camera.times.length - 1) / span : 0;
        $('camera-fps').textContent = `${fps.toFixed(1)} frames per second on ${$('backend-used').dataset.backend ?? 'this backend'} (${Math.round(reply.ms)} ms a frame)`;
        $('camera-view').dataset.frames = camera.painted;
        $('camera-legend').replaceChildren(...r.summary.flatMap((c, k) => {
          if (c.share === 0 || k === 0) return [];
          const chip = text('span', '', 'chip');
          const swatch = text('span', '', 'swatch');
          swatch.style.background = rgb(r.colours, k);
          chip.append(swatch, `${c.label} ${(c.share * 100).toFixed(0)} %`);
          chip.dataset.label = c.label;
          chip.dataset.share = String(c.share);
          return [chip];
        }));
      } catch (e) {
        $('camera-status').textContent = `A frame failed: ${e.message}`;
        await new Promise((ok) => setTimeout(ok, 500));
      } finally {
        frame.close();
      }
    }
  }

  $('camera').onclick = () => (camera.stream ? stopCamera() : startCamera());
}
