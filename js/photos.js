// Any image the API takes, as the module's Photo (decoded once), and a photo's pixels at a size.
import { live } from './module.js';

/** Refuses an encoded photo of more bytes than the module reads, before it is read or copied. */
function checkPhotoBytes(bytes) {
  const cap = live().maxPhotoBytes();
  if (bytes > cap) {
    throw new Error(`the file is ${Math.ceil(bytes / 1048576)} MB; photos of at most ${cap / 1048576} MB are read`);
  }
}

/** Any image as the wasm module's `Photo` (decoded once): encoded bytes, or RGBA pixels. */
async function toPhoto(image) {
  if (typeof Blob !== 'undefined' && image instanceof Blob) {
    checkPhotoBytes(image.size);
    return live().Photo.fromBytes(new Uint8Array(await image.arrayBuffer()));
  }
  if (image instanceof ArrayBuffer) return toPhoto(new Uint8Array(image));
  if (image instanceof Uint8Array) {
    checkPhotoBytes(image.byteLength);
    return live().Photo.fromBytes(image);
  }
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) {
    return live().Photo.fromPixels(new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength), image.width, image.height);
  }
  // ImageBitmap, <img>, <canvas>, OffscreenCanvas, <video>: draw it and read the pixels.
  if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement && !image.complete) {
    await image.decode();
  }
  const width = image.naturalWidth ?? image.videoWidth ?? image.width;
  const height = image.naturalHeight ?? image.videoHeight ?? image.height;
  if (!width || !height) throw new Error('The image has no pixels yet (not loaded, or zero-sized)');
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(image, 0, 0);
  return toPhoto(ctx.getImageData(0, 0, width, height));
}

/** Runs `use(photo)` on `image` as a Photo, freeing the Photo afterwards. */
export async function withPhoto(image, use) {
  const photo = await toPhoto(image);
  try {
    return await use(photo);
  } finally {
    photo.free();
  }
}

/** RGBA pixels of `photo` at `width × height`: an ImageData of that size as it is, else drawn. */
export function pixelsAt(photo, width, height) {
  if (typeof ImageData !== 'undefined' && photo instanceof ImageData) {
    if (photo.width !== width || photo.height !== height) {
      throw new Error(`the photo is ${photo.width}×${photo.height}, the segmentation ${width}×${height}: pass it at that size, or as a bitmap, canvas or image to draw`);
    }
    return photo.data;
  }
  const ctx = new OffscreenCanvas(width, height).getContext('2d');
  ctx.drawImage(photo, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height).data;
}
