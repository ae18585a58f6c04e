package main

import (
	"fmt"
	"io"

	"github.com/ortrain/ortrain/training/data"
)

func cmdPrepare(args []string, stdout, stderr io.Writer) error {
	const synopsis = "prepare fashion-mnist --out DIR [--train-per-class 300] [--val-per-class 100]"
	fs, help := flagSet("prepare")
	out := fs.String("out", "data/fashion-mnist", "folder to write train/<class>/ and val/<class>/ into")
	src := fs.String("src", data.FashionMNISTDir, "folder with the idx files (Debian's dataset-fashion-mnist)")
	trainN := fs.Int("train-per-class", 300, "training images per class")
	valN := fs.Int("val-per-class", 100, "validation images per class")
	if err := parse(fs, help, args, synopsis, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "fashion-mnist" {
		return usageError{fmt.Errorf("prepare knows one dataset: fashion-mnist")}
	}
	if err := data.PrepareFashionMNIST(*src, *out, *trainN, *valN); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: Fashion-MNIST, %d training and %d validation images per class\n", *out, *trainN, *valN)
	return nil
}
