// Package models builds the ResNets of "Bag of Tricks" as graphgen graphs.
//
// It owns the family of He et al. (2016) with the tweaks of He et al.
// (2019): depths 18, 34, 50, 101 and 152, variants B, C and D as
// independent options (Arch), their initialization (seeded Xavier uniform,
// zero biases, BatchNorm 1/0, optional zero-gamma), a summary of parameters
// and multiply-accumulates per stage, and the metadata a model file carries
// (its preprocessing and classes).
//
// Parameter names follow torchvision and timm (layer2.0.conv1.weight,
// conv1.0.weight for the deep stem, downsample.1.weight after the average pool
// of ResNet-D), so weights map one to one between the frameworks.
//
// It knows graphgen only: not ONNX Runtime, not training. Training plugs in
// through Options hooks (how a parameter enters the graph, how BatchNorm is
// emitted) without this package knowing what it does with them.
package models
