// A React app segmenting a picked photo with groupseg, off the main thread: `groupseg/worker` runs
// the model in a Web Worker the package starts itself. With no options, Segmenter.load() uses the
// shapes demo that ships inside the package; pass { modelUrl } for a real checkpoint.
import { useEffect, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { Segmenter } from 'groupseg/worker';

function App() {
  const [segmenter, setSegmenter] = useState(null);
  const [progress, setProgress] = useState(0);
  const [status, setStatus] = useState('Loading the model…');
  const [labels, setLabels] = useState('red circle, blue star, green triangle');
  const [legend, setLegend] = useState([]);
  const canvas = useRef(null);

  useEffect(() => {
    let live = null;
    Segmenter.load({ onProgress: (p) => setProgress(p.progress) }).then((s) => {
      live = s;
      setSegmenter(s);
      setStatus(`Ready (${s.backend}, ${s.threads} thread${s.threads === 1 ? '' : 's'}): pick a photo.`);
      document.body.dataset.ready = 'true';
    }, (e) => setStatus(`Could not load the model: ${e.message}`));
    return () => live?.dispose();
  }, []);

  async function segment(file) {
    try {
      const bitmap = await createImageBitmap(file);
      const result = await segmenter.segment(bitmap, labels);
      const c = canvas.current;
      Object.assign(c, { width: result.width, height: result.height });
      const ctx = c.getContext('2d');
      ctx.drawImage(bitmap, 0, 0, result.width, result.height);
      ctx.putImageData(result.toImageData({ photo: ctx.getImageData(0, 0, result.width, result.height), opacity: 0.6 }), 0, 0);
      setLegend(result.summary.filter((s) => s.share > 0));
      setStatus('Done.');
    } catch (e) {
      setStatus(`Could not segment ${file.name}: ${e.message}`);
    }
  }

  return (
    <>
      <h1>groupseg + React</h1>
      <progress max="1" value={progress} />
      <p><label>Labels: <input id="labels" size="50" value={labels} onChange={(e) => setLabels(e.target.value)} /></label></p>
      <p><label>Photo: <input id="photo" type="file" accept="image/*" disabled={!segmenter}
        onChange={(e) => e.target.files[0] && segment(e.target.files[0])} /></label></p>
      <p id="status">{status}</p>
      <canvas id="out" ref={canvas} style={{ width: 'min(100%, 32rem)' }} />
      <ul id="legend">{legend.map((c) => <li key={c.label}>{`${c.label}: ${(100 * c.share).toFixed(1)} %`}</li>)}</ul>
    </>
  );
}

createRoot(document.getElementById('root')).render(<App />);
