// Package data turns image folders into normalized batches.
//
// It owns ImageFolder datasets (root/<class>/<image>, classes in sorted
// order), decoding JPEG and PNG to RGB, the seed's training augmentations
// (random-resized crop, horizontal flip, brightness/saturation/hue scaling,
// AlexNet PCA lighting, normalization), the validation transform (resize,
// center crop, normalize; bilinear or bicubic), and a loader that fills
// batches on all cores in a deterministic order.
//
// Every random draw of a sample comes from its own stream, seeded by (seed,
// epoch, index), so a batch is the same whatever the worker count and a
// resumed run sees exactly the images an uninterrupted one would.
//
// It knows images and tensors as float32 slices; it does not know ONNX,
// models or the training loop.
package data
