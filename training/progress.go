package training

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Progress shows a per-epoch progress line: a bar redrawn in place on a
// terminal, a plain line every Every batches (and at the end) otherwise.
type Progress struct {
	W        io.Writer
	Terminal bool
	Every    int // plain mode: a line every so many batches
	// Width is the terminal's width in columns (0: 100); the line is cut
	// to it so that it never wraps.
	Width  int
	total  int
	first  int
	label  string
	start  time.Time
	images int
}

// Begin starts an epoch of total batches, the first `first` of which were
// done before (a resumed epoch).
func (p *Progress) Begin(label string, total, first int) {
	p.label, p.total, p.first, p.start, p.images = label, total, first, time.Now(), 0
}

// Update reports batch done (1-based) with the running loss and the lr.
func (p *Progress) Update(done, images int, loss, lr float64, extra string) {
	p.images += images
	el := time.Since(p.start).Seconds()
	rate := float64(p.images) / max(el, 1e-9)
	eta := time.Duration(float64(p.total-done) * el / float64(max(done-p.first, 1)) * float64(time.Second)).Round(time.Second)
	msg := fmt.Sprintf("%s %d/%d  loss %.4f  lr %.4g  %.1f img/s  ETA %s%s", p.label, done, p.total, loss, lr, rate, eta, extra)
	if p.Terminal {
		const width = 20
		filled := width * done / max(p.total, 1)
		bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
		line := "[" + bar + "] " + msg
		cols := p.Width
		if cols <= 0 {
			cols = 100
		}
		if len(line) > cols-1 {
			line = line[:cols-1]
		}
		fmt.Fprintf(p.W, "\r%s\x1b[K", line)
		if done == p.total {
			fmt.Fprintln(p.W)
		}
		return
	}
	every := max(p.Every, 1)
	if done%every == 0 || done == p.total {
		fmt.Fprintln(p.W, msg)
	}
}

// End finishes a line that was redrawn in place (after an interruption).
func (p *Progress) End() {
	if p.Terminal {
		fmt.Fprintln(p.W)
	}
}
