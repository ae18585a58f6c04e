// Package training owns everything about training a model: the train-step
// graph (forward in training mode, the loss with soft targets and optional
// distillation, backward by graphgen's autodiff, Nesterov SGD with
// no-bias-decay, mixed precision), targets (label smoothing, mixup), and, as
// the trainer grows, the data pipeline, schedules, the loop, checkpoints,
// metrics and export.
//
// It builds on graphgen (graphs), models (the networks) and runtime (ONNX
// Runtime). It does not know where teacher logits come from: distillation
// reaches it through a small interface, so it never imports distill.
package training
