package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ortrain/ortrain/graphgen"
	"github.com/ortrain/ortrain/graphgen/onnxpb"
	"github.com/ortrain/ortrain/internal/testutil"
	"github.com/ortrain/ortrain/models"
	"github.com/ortrain/ortrain/training"
	"github.com/ortrain/ortrain/training/data"
	"google.golang.org/protobuf/proto"
)

// buildCLI compiles ortrain for tests that need a separate process, with
// the build tags of the test binary (buildTags: "mpi" in an MPI build).
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ortrain")
	cmd := exec.Command("go", "build", "-tags", buildTags, "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// fashion prepares a small real dataset (Fashion-MNIST from Debian's
// dataset-fashion-mnist, which scripts/setup.sh installs).
func fashion(t *testing.T, train, val int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fm")
	if err := data.PrepareFashionMNIST(data.FashionMNISTDir, dir, train, val); err != nil {
		t.Fatal(err)
	}
	return dir
}

func trainArgs(dataDir, out string) []string {
	return []string{"train", "--data", dataDir, "--out", out, "--model", "resnet18", "--image-size", "32",
		"--epochs", "2", "--batch-size", "16", "--recipe", "tricks", "--fp16", "--lr-base", "0.4", "--seed", "3", "--workers", "2", "--threads", "2"}
}

// checkpointPair reads two checkpoints, which must be of the same step.
func checkpointPair(t *testing.T, a, b string) (ca, cb *training.Checkpoint) {
	t.Helper()
	ca, err := training.ReadCheckpoint(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err = training.ReadCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Meta.Step != cb.Meta.Step || ca.Meta.Epoch != cb.Meta.Epoch {
		t.Fatalf("checkpoints at step %d/epoch %d and %d/%d", ca.Meta.Step, ca.Meta.Epoch, cb.Meta.Step, cb.Meta.Epoch)
	}
	return ca, cb
}

func sameCheckpoints(t *testing.T, a, b string) {
	t.Helper()
	ca, cb := checkpointPair(t, a, b)
	for n, va := range ca.Tensors {
		vb := cb.Tensors[n]
		if len(va) != len(vb) {
			t.Fatalf("%s: sizes differ", n)
		}
		for i := range va {
			if va[i] != vb[i] && !(va[i] != va[i] && vb[i] != vb[i]) {
				t.Fatalf("%s[%d]: %g after the straight run, %g after the resumed one", n, i, va[i], vb[i])
			}
		}
	}
}

// Exact resume: a run stopped hard (kill -9) at a random step of its second
// epoch, then resumed from its last checkpoint, ends with parameters, buffers
// and statistics bit-identical to a run that was never stopped; so does one
// stopped by SIGINT mid-epoch, which checkpoints before exiting.
func TestResumeIsExact(t *testing.T) {
	testutil.InitORT(t)
	bin := buildCLI(t)
	dir := fashion(t, 20, 10)
	root := t.TempDir()
	straight := filepath.Join(root, "straight")
	if out, err := exec.Command(bin, trainArgs(dir, straight)...).CombinedOutput(); err != nil {
		t.Fatalf("straight run: %v\n%s", err, out)
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for _, how := range []string{"kill", "sigint"} {
		out := filepath.Join(root, how)
		cmd := exec.Command(bin, trainArgs(dir, out)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the end-of-epoch-1 checkpoint, then stop at a random moment
		// of epoch 2.
		deadline := time.Now().Add(3 * time.Minute)
		for {
			if _, err := os.Stat(filepath.Join(training.CheckpointDir(out), "epoch-0001.ckpt")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("%s: epoch 1 did not finish\n%s", how, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(r.IntN(1500)) * time.Millisecond)
		sig := syscall.SIGKILL
		if how == "sigint" {
			sig = syscall.SIGINT
		}
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		if err == nil {
			t.Logf("%s: the run finished before the signal; resuming a finished run", how)
		} else if how == "sigint" {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitCodeInterrupted {
				t.Fatalf("sigint: %v\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "--resume") {
				t.Errorf("sigint: no resume hint in %q", stderr.String())
			}
		}
		if b, err := exec.Command(bin, "train", "--resume", out, "--workers", "2", "--threads", "2").CombinedOutput(); err != nil {
			t.Fatalf("%s: resume: %v\n%s", how, err, b)
		}
		sameCheckpoints(t, filepath.Join(training.CheckpointDir(straight), "last.ckpt"), filepath.Join(training.CheckpointDir(out), "last.ckpt"))
		a, _ := os.ReadFile(filepath.Join(straight, "model.onnx"))
		b, _ := os.ReadFile(filepath.Join(out, "model.onnx"))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: exported models differ", how)
		}
	}
}

// End to end on a small real image folder: the loss falls and validation
// top-1 clearly beats chance (10%), and the run leaves its artifacts.
func TestTrainEndToEnd(t *testing.T) {
	testutil.InitORT(t)
	dir := fashion(t, 40, 20)
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--data", dir, "--out", out, "--model", "resnet18d", "--image-size", "32", "--epochs", "4",
		"--batch-size", "32", "--recipe", "tricks", "--lr-base", "0.4", "--mixup-alpha", "0", "--seed", "1"}
	code, stdout, stderr := runCLI(args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	hist, err := training.ReadMetrics(out)
	if err != nil || len(hist) != 4 {
		t.Fatalf("metrics: %v, %d epochs", err, len(hist))
	}
	if hist[3].TrainLoss >= hist[0].TrainLoss {
		t.Errorf("train loss did not fall: %.4f -> %.4f", hist[0].TrainLoss, hist[3].TrainLoss)
	}
	if hist[3].ValTop1 < 0.35 {
		t.Errorf("val top-1 %.1f%% after 4 epochs, want well above chance (10%%)", 100*hist[3].ValTop1)
	}
	checkEpochTimes(t, hist)
	for _, f := range []string{"config.json", "metrics.csv", "loss.png", "accuracy.png", "lr.png", "model.onnx", "checkpoints/best.ckpt"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("missing %s", f)
		}
	}
	code, stdout, _ = runCLI("eval", "--model", filepath.Join(out, "model.onnx"), "--data", dir)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("top-1 %.2f%%", 100*hist[3].ValTop1)) {
		t.Errorf("eval of the exported model: %q, want top-1 %.2f%%", stdout, 100*hist[3].ValTop1)
	}
	code, stdout, _ = runCLI("predict", "--model", filepath.Join(out, "model.onnx"), filepath.Join(dir, "val", "1-trouser", "2.png"))
	if code != 0 || !strings.Contains(stdout, "1-trouser") {
		t.Errorf("predict: %q", stdout)
	}
}

// Bad input to ortrain train: one-line errors, exit != 0, and existing
// checkpoints untouched.
func TestTrainBadInput(t *testing.T) {
	testutil.InitORT(t)
	dir := fashion(t, 4, 2)
	base := []string{"train", "--model", "resnet18", "--image-size", "32", "--epochs", "1", "--batch-size", "8"}
	run := func(extra ...string) (int, string) {
		code, _, stderr := runCLI(append(append([]string{}, base...), extra...)...)
		return code, stderr
	}
	lastLine := func(s string) string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		return lines[len(lines)-1]
	}
	code, stderr := run("--data", filepath.Join(t.TempDir(), "missing"), "--out", t.TempDir())
	if code == 0 || !strings.Contains(lastLine(stderr), "missing") {
		t.Errorf("missing folder: exit %d, %q", code, lastLine(stderr))
	}
	empty := t.TempDir()
	os.MkdirAll(filepath.Join(empty, "train"), 0o755)
	os.MkdirAll(filepath.Join(empty, "val"), 0o755)
	if code, stderr = run("--data", empty, "--out", t.TempDir()); code == 0 || !strings.Contains(lastLine(stderr), "no class folders") {
		t.Errorf("empty folder: exit %d, %q", code, lastLine(stderr))
	}
	// NaN passes range checks unless refused by name.
	nanOut := filepath.Join(t.TempDir(), "nan")
	code, stderr = run("--data", dir, "--out", nanOut, "--kd-hard-weight", "nan")
	wantOneLine(t, code, stderr, "--kd-hard-weight must be a finite number")
	if _, err := os.Stat(nanOut); err == nil {
		t.Error("a refused configuration left a run folder")
	}
	// Mismatched class sets: an extra class in val.
	mism := t.TempDir()
	exec.Command("cp", "-r", dir+"/.", mism).Run()
	os.MkdirAll(filepath.Join(mism, "val", "zz-extra"), 0o755)
	exec.Command("cp", filepath.Join(dir, "val", "1-trouser", "2.png"), filepath.Join(mism, "val", "zz-extra")).Run()
	if code, stderr = run("--data", mism, "--out", t.TempDir()); code == 0 || !strings.Contains(lastLine(stderr), "classes") {
		t.Errorf("mismatched classes: exit %d, %q", code, lastLine(stderr))
	}
	// A finished run, then resumes that cannot work: checkpoints untouched.
	out := filepath.Join(t.TempDir(), "run")
	if code, stderr = run("--data", dir, "--out", out); code != 0 {
		t.Fatalf("run: %s", stderr)
	}
	ckpt := filepath.Join(training.CheckpointDir(out), "last.ckpt")
	before, _ := os.ReadFile(ckpt)
	cfg, _ := os.ReadFile(filepath.Join(out, "config.json"))
	// The run's config now names another model than its checkpoint.
	os.WriteFile(filepath.Join(out, "config.json"), bytes.Replace(cfg, []byte(`"resnet18"`), []byte(`"resnet34"`), 1), 0o644)
	code, _, stderr = runCLI("train", "--resume", out)
	if code == 0 || !strings.Contains(lastLine(stderr), "checkpoint is of resnet18") {
		t.Errorf("checkpoint of another model: exit %d, %q", code, lastLine(stderr))
	}
	// The data now has other classes than the checkpoint.
	os.WriteFile(filepath.Join(out, "config.json"), bytes.Replace(cfg, []byte(dir), []byte(mism), 1), 0o644)
	os.MkdirAll(filepath.Join(mism, "train", "zz-extra"), 0o755)
	exec.Command("cp", filepath.Join(dir, "val", "1-trouser", "2.png"), filepath.Join(mism, "train", "zz-extra")).Run()
	code, _, stderr = runCLI("train", "--resume", out)
	if code == 0 || !strings.Contains(lastLine(stderr), "classes") {
		t.Errorf("checkpoint of other classes: exit %d, %q", code, lastLine(stderr))
	}
	// A model whose class count does not fit the data.
	code, _, stderr = runCLI("eval", "--model", filepath.Join(out, "model.onnx"), "--data", mism)
	if code == 0 || !strings.Contains(stderr, "has 10 classes") {
		t.Errorf("eval with other classes: exit %d, %q", code, stderr)
	}
	// A corrupt checkpoint is refused by name.
	bad := filepath.Join(t.TempDir(), "bad.ckpt")
	os.WriteFile(bad, append(append([]byte{}, before[:len(before)-10]...), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0o644)
	code, _, stderr = runCLI("export", "--checkpoint", bad, "-o", filepath.Join(t.TempDir(), "m.onnx"))
	if code == 0 || !strings.Contains(stderr, "corrupt") {
		t.Errorf("corrupt checkpoint: exit %d, %q", code, stderr)
	}
	if after, _ := os.ReadFile(ckpt); !bytes.Equal(before, after) {
		t.Error("a failed resume changed the checkpoint")
	}
	// A new run into a folder that holds one is refused.
	if code, stderr := run("--data", dir, "--out", out); code != 2 || !strings.Contains(lastLine(stderr), "already holds a run") {
		t.Errorf("new run over an old one: exit %d, %q", code, lastLine(stderr))
	}
	// A resumed run keeps its configuration.
	// How it runs may change (only --lr is named, not the runtime flags).
	code, _, stderr = runCLI("train", "--resume", out, "--lr", "0.5", "--parallel", "--ort-config", "a=b", "--threads", "1")
	if code != 2 || !strings.Contains(stderr, "drop --lr\n") {
		t.Errorf("resume with a changed flag: exit %d, %q", code, stderr)
	}
}

// Distillation end to end: a teacher trained by ortrain and exported, then a
// student trained with --teacher logs both loss parts; a teacher that does
// not fit is refused before any step.
func TestDistillEndToEnd(t *testing.T) {
	testutil.InitORT(t)
	dir := fashion(t, 20, 10)
	root := t.TempDir()
	teacher := filepath.Join(root, "teacher")
	common := []string{"--image-size", "32", "--epochs", "1", "--batch-size", "16", "--seed", "2", "--data", dir}
	if code, _, stderr := runCLI(append([]string{"train", "--model", "resnet18", "--out", teacher}, common...)...); code != 0 {
		t.Fatalf("teacher: %s", stderr)
	}
	student := filepath.Join(root, "student")
	code, _, stderr := runCLI(append([]string{"train", "--model", "resnet18d", "--out", student, "--recipe", "tricks",
		"--teacher", filepath.Join(teacher, "model.onnx"), "--kd-temperature", "20", "--teacher-threads", "1"}, common...)...)
	if code != 0 {
		t.Fatalf("student: %s", stderr)
	}
	if !strings.Contains(stderr, "loss hard") || !strings.Contains(stderr, "soft") || !strings.Contains(stderr, "teacher") {
		t.Errorf("epoch line lacks the loss parts or teacher time: %s", stderr)
	}
	hist, err := training.ReadMetrics(student)
	if err != nil || len(hist) != 1 || hist[0].TrainHard <= 0 || hist[0].TrainSoft <= 0 || hist[0].TeacherMS <= 0 {
		t.Errorf("metrics: %+v %v", hist, err)
	}
	// Scoring the next batch during the step changes timing only: the same
	// weights to the bit.
	overlapped := filepath.Join(root, "student-overlap")
	code, _, stderr = runCLI(append([]string{"train", "--model", "resnet18d", "--out", overlapped, "--recipe", "tricks",
		"--teacher", filepath.Join(teacher, "model.onnx"), "--kd-temperature", "20", "--teacher-threads", "1", "--teacher-overlap"}, common...)...)
	if code != 0 {
		t.Fatalf("student with overlap: %s", stderr)
	}
	sameCheckpoints(t, filepath.Join(training.CheckpointDir(student), "last.ckpt"), filepath.Join(training.CheckpointDir(overlapped), "last.ckpt"))
	// A teacher with other classes: refused before any step, leaving no
	// run folder behind.
	gen := filepath.Join(root, "gen7.onnx")
	if c, _, e := runCLIGraphgen("resnet18", "--classes", "7", "--image-size", "32", "-o", gen); c != 0 {
		t.Fatal(e)
	}
	out := filepath.Join(root, "refused")
	code, _, stderr = runCLI(append([]string{"train", "--model", "resnet18", "--out", out, "--teacher", gen}, common...)...)
	wantOneLine(t, code, stderr, "has 7 classes, the student 10")
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused teacher left %s behind", out)
	}
	// A teacher whose input is not an image batch.
	g := graphgen.New("flat", graphgen.DefaultOpset)
	x := g.Input("x", graphgen.Float, graphgen.Shape{graphgen.Sym("N"), graphgen.D(3 * 32 * 32)})
	w := g.Initializer("w", graphgen.FloatTensor([]int64{3 * 32 * 32, 10}, make([]float32, 3*32*32*10)))
	g.Output(g.MatMul(x, w))
	flat := filepath.Join(root, "flat.onnx")
	if err := g.WriteFile(flat, graphgen.ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(append([]string{"train", "--model", "resnet18", "--out", out, "--teacher", flat}, common...)...)
	wantOneLine(t, code, stderr, "has rank 2")
	// A teacher for another image size: refused too, in one line.
	gen48 := filepath.Join(root, "gen48.onnx")
	if c, _, e := runCLIGraphgen("resnet18", "--classes", "10", "--image-size", "48", "-o", gen48); c != 0 {
		t.Fatal(e)
	}
	code, _, stderr = runCLI(append([]string{"train", "--model", "resnet18", "--out", out, "--teacher", gen48}, common...)...)
	wantOneLine(t, code, stderr, "the student's images are 32x32")
}

// Corrupt, truncated and zero-byte images in the data: the run replaces and
// reports them (epoch line, metrics), and fails with a clear message when
// they exceed --bad-limit.
func TestUnreadableImages(t *testing.T) {
	testutil.InitORT(t)
	dir := fashion(t, 10, 4)
	good, _ := os.ReadFile(filepath.Join(dir, "train", "1-trouser", "2.png"))
	bad := map[string][]byte{"zero.png": nil, "truncated.png": good[:len(good)/2], "corrupt.jpg": []byte("not a jpeg at all"),
		"zero2.png": nil, "corrupt2.jpg": []byte{0xff, 0xd8, 0xff, 0xe0, 1, 2, 3}}
	for name, b := range bad {
		os.WriteFile(filepath.Join(dir, "train", "0-tshirt-top", name), b, 0o644)
	}
	// 105 images in batches of 7: every one is read in the epoch.
	args := []string{"train", "--data", dir, "--model", "resnet18", "--image-size", "32", "--epochs", "1", "--batch-size", "7", "--workers", "2"}
	out := filepath.Join(t.TempDir(), "run")
	code, _, stderr := runCLI(append(args, "--out", out, "--bad-limit", "0.05")...)
	if code != 0 {
		t.Fatalf("5 of 105 unreadable under a 5%% limit: exit %d\n%s", code, stderr)
	}
	hist, _ := training.ReadMetrics(out)
	named := 0
	for name := range bad {
		if strings.Contains(stderr, name) {
			named++
		}
	}
	if len(hist) != 1 || hist[0].Unreadable != 5 || !strings.Contains(stderr, "5 unreadable images replaced") || named < 3 {
		t.Errorf("unreadable images not reported (%d named): %+v\n%s", named, hist, stderr)
	}
	code, _, stderr = runCLI(append(args, "--out", filepath.Join(t.TempDir(), "run2"), "--bad-limit", "0.01")...)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code == 0 || !strings.Contains(lines[len(lines)-1], "unreadable images") {
		t.Errorf("over the limit: exit %d, %q", code, lines[len(lines)-1])
	}
}

// renormalized writes a copy of an exported classifier that expects
// images normalized by mean and std (0-255 scale) instead of the seed's,
// and says so in its metadata: x_seed = x*(std/seedStd) + (mean-seedMean)/seedStd
// runs before the original graph, so on its own preprocessing it gives the
// original's logits.
func renormalized(t *testing.T, src, dst string, mean, std [3]float32) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	in := g.Input[0].GetName()
	var a, c []float32
	for i := 0; i < 3; i++ {
		a = append(a, std[i]/data.Std[i])
		c = append(c, (mean[i]-data.Mean[i])/data.Std[i])
	}
	const scaled, shifted = "renorm/scaled", "renorm/images"
	for _, n := range g.Node {
		for i, x := range n.Input {
			if x == in {
				n.Input[i] = shifted
			}
		}
	}
	tensor := func(name string, v []float32) *onnxpb.TensorProto {
		return &onnxpb.TensorProto{Name: proto.String(name), Dims: []int64{1, 3, 1, 1},
			DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), FloatData: v}
	}
	g.Initializer = append(g.Initializer, tensor("renorm/a", a), tensor("renorm/c", c))
	g.Node = append([]*onnxpb.NodeProto{
		{OpType: proto.String("Mul"), Input: []string{in, "renorm/a"}, Output: []string{scaled}, Name: proto.String("renorm/mul")},
		{OpType: proto.String("Add"), Input: []string{scaled, "renorm/c"}, Output: []string{shifted}, Name: proto.String("renorm/add")},
	}, g.Node...)
	for _, kv := range m.MetadataProps {
		switch kv.GetKey() {
		case models.MetaMean:
			kv.Value = proto.String(fmt.Sprintf("%g,%g,%g", mean[0], mean[1], mean[2]))
		case models.MetaStd:
			kv.Value = proto.String(fmt.Sprintf("%g,%g,%g", std[0], std[1], std[2]))
		}
	}
	out, err := proto.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// eval and predict take a classifier's preprocessing from its metadata: a
// model that expects other normalization (mean and std 127.5, as timm's
// 0.5 on the 0-1 scale) scores exactly as the original without any flag,
// and differently when flags force the seed's normalization on it; a model
// without metadata gets the defaults, and says so.
func TestEvalUsesModelPreprocessing(t *testing.T) {
	testutil.InitORT(t)
	dir := fashion(t, 40, 20)
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--data", dir, "--out", out, "--model", "resnet18", "--image-size", "32", "--epochs", "2",
		"--batch-size", "20", "--lr-base", "0.4", "--seed", "1"}
	if code, stdout, stderr := runCLI(args...); code != 0 {
		t.Fatalf("train: exit %d\n%s%s", code, stdout, stderr)
	}
	orig := filepath.Join(out, "model.onnx")
	other := filepath.Join(t.TempDir(), "other.onnx")
	renormalized(t, orig, other, [3]float32{127.5, 127.5, 127.5}, [3]float32{127.5, 127.5, 127.5})
	eval := func(model string, flags ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := runCLI(append([]string{"eval", "--model", model, "--data", dir}, flags...)...)
		if code != 0 {
			t.Fatalf("eval %s %v: exit %d\n%s", model, flags, code, stderr)
		}
		_, score, _ := strings.Cut(stdout, "images): ")
		return score, stderr
	}
	want, note := eval(orig)
	if !strings.Contains(note, "mean 123.68,116.779,103.939, std 58.393,57.12,57.375, crop 0.875, bilinear (from the model's metadata)") {
		t.Errorf("original model: %q", note)
	}
	got, note := eval(other)
	if got != want {
		t.Errorf("renormalized model: %q, the original %q", got, want)
	}
	if !strings.Contains(note, "mean 127.5,127.5,127.5, std 127.5,127.5,127.5") {
		t.Errorf("renormalized model's preprocessing: %q", note)
	}
	forced, note := eval(other, "--mean", "123.68,116.779,103.939", "--std", "58.393,57.12,57.375")
	if forced == want || !strings.Contains(note, "given: mean, std; the rest from the model's metadata") {
		t.Errorf("seed normalization forced on the renormalized model: %q (%q), the original %q", forced, note, want)
	}
	// The 0-1 scale, as timm and torchvision write it.
	if got, _ := eval(other, "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"); got != want {
		t.Errorf("--mean/--std 0.5 on the 0-1 scale: %q, want %q", got, want)
	}
	bare := filepath.Join(t.TempDir(), "bare.onnx")
	m, err := models.Build(models.Options{Name: "resnet18", Classes: 10, ImageSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Graph.WriteFile(bare, graphgen.ModelInfo{}); err != nil {
		t.Fatal(err)
	}
	if _, note := eval(bare); !strings.Contains(note, "the model states none: ImageNet's defaults)\n--mean, --std, --crop-pct and --interpolation set them") {
		t.Errorf("model without metadata: %q", note)
	}
	if _, note := eval(bare, "--interpolation", "bicubic", "--crop-pct", "1"); !strings.Contains(note, "crop 1, bicubic (given: crop share, interpolation; the rest ImageNet's defaults") {
		t.Errorf("model without metadata, with flags: %q", note)
	}
	img := filepath.Join(dir, "val", "1-trouser", "2.png")
	_, p1, _ := runCLI("predict", "--model", orig, img)
	_, p2, _ := runCLI("predict", "--model", other, img)
	if p1 == "" || p1 != p2 {
		t.Errorf("predict: original %q, renormalized %q", p1, p2)
	}
	for _, c := range []struct{ flag, value, want string }{
		{"--mean", "1,2", "--mean takes three values"},
		{"--std", "1,0,1", "must be above 0"},
		{"--crop-pct", "1.5", "not in (0, 1]"},
		{"--interpolation", "lanczos", "bilinear or bicubic"},
	} {
		code, _, stderr := runCLI("eval", "--model", other, "--data", dir, c.flag, c.value)
		wantOneLine(t, code, stderr, c.want)
	}
}

// A run stopped hard (kill -9) before its first checkpoint leaves a run
// folder with a configuration only: a new run there is refused with the
// resume command, and that command starts the run over.
func TestResumeBeforeFirstCheckpoint(t *testing.T) {
	testutil.InitORT(t)
	bin := buildCLI(t)
	dir := fashion(t, 20, 10)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(bin, trainArgs(dir, out)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(out, "config.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("no config.json")
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(training.CheckpointDir(out), "last.ckpt")); err == nil {
		t.Fatal("the run checkpointed before it was killed (an epoch takes seconds): kill it sooner")
	}
	b, err := exec.Command(bin, trainArgs(dir, out)...).CombinedOutput()
	hint := "--resume " + out
	if err == nil || !strings.Contains(string(b), hint) {
		t.Fatalf("a new run over the stopped one: %v\n%s", err, b)
	}
	b, err = exec.Command(bin, "train", "--resume", out).CombinedOutput()
	if err != nil || !strings.Contains(string(b), "no checkpoint yet") {
		t.Fatalf("resume with no checkpoint: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(out, "model.onnx")); err != nil {
		t.Errorf("the resumed run did not finish: %v", err)
	}
}

// checkEpochTimes: each epoch's time split (metrics.jsonl) is measured and
// adds up within the epoch's seconds, and the wait for these small images,
// decoded while the steps run, is well under the steps' time: a
// micro-batch's step counted as waiting (the split step's accumulation)
// would not be.
func checkEpochTimes(t *testing.T, hist []training.EpochRecord) {
	t.Helper()
	for _, r := range hist {
		if parts := r.DataWaitSeconds + r.StepSeconds + r.EvalSeconds; r.StepSeconds <= 0 || r.EvalSeconds <= 0 ||
			r.DataWaitSeconds > r.StepSeconds/2 || parts > r.Seconds {
			t.Errorf("epoch %d: waiting %.3fs, steps %.3fs, evaluation %.3fs of %.3fs", r.Epoch, r.DataWaitSeconds, r.StepSeconds, r.EvalSeconds, r.Seconds)
		}
	}
}
