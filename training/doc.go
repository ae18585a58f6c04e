// Package training trains a ResNet: its step graph, and the loop around it.
//
// It owns the train-step graph (BuildStep: forward in training mode, the
// loss with soft targets and optional distillation, backward by graphgen's
// autodiff, Nesterov SGD with no-bias-decay, mixed precision) and the
// Stepper that runs it, the targets (label smoothing, mixup), schedules, the
// Trainer (epochs, evaluation, checkpoints and exact resume, metrics and
// plots), the configuration and its policies, starting weights (Init,
// frozen tensors) and export.
//
// It builds on graphgen (graphs), models (the networks), runtime (ONNX
// Runtime) and weights (other tools' weight files). It does not know where teacher logits come from: distillation
// reaches it through a small interface, so it never imports distill.
package training
