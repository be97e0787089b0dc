package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	_ "image/png" // decodes PNG thumbnails' sources
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/fieldsync/fieldsync/hq/report"
)

// Files reads the bytes of files attached to records: the read model holds
// only their references, the bytes are syncd's (its attachments.db).
// syncd fills it from the server's store; the page checks the scope (a
// record naming the file, in the asker's town) before asking.
type Files interface {
	// CopyFile writes the whole file named by its SHA-256 to w, streamed
	// (never held whole), and returns the bytes written. ErrNoFile when the
	// server does not hold it complete (not uploaded yet).
	CopyFile(ctx context.Context, sha256 string, w io.Writer) (int64, error)
	// Proven reports whether the file's bytes were proven through the
	// record (uploaded through it, or by a device that showed it holds
	// them): a record that names a file by its hash alone opens nothing.
	Proven(ctx context.Context, recordID, sha256 string) (bool, error)
}

// ErrNoFile says the server does not hold a file complete (yet).
var ErrNoFile = errors.New("file not on the server yet")

// Thumbnails: the longest side, and the largest picture decoded for one:
// at most MaxThumbnailSource pixels and MaxThumbnailBytes of memory as
// its header tells (thumbnailBytes: a progressive JPEG holds its
// coefficients, ~12 bytes a pixel; a 16-bit PNG 8), so that a small file
// describing a huge picture (a decompression bomb) gets the icon instead
// of the server's memory. A phone's 12-16 MP photo fits; larger gets the
// icon. Two are made at once (thumbSlots): at most 2 × MaxThumbnailBytes.
const (
	ThumbPixels        = 160
	MaxThumbnailSource = 64 << 20
	MaxThumbnailBytes  = 192 << 20
)

// thumbnailBytes is the memory a decode of a picture of cfg may take, per
// pixel, by its colour model (the worst case of its format).
func thumbnailBytes(cfg image.Config, format string) int64 {
	per := int64(4)
	switch cfg.ColorModel {
	case color.RGBA64Model, color.NRGBA64Model:
		per = 8
	case color.GrayModel, color.Gray16Model:
		per = 2
	}
	if format == "jpeg" {
		per = 12 // a progressive JPEG keeps every block's coefficients beside the planes
	}
	return int64(cfg.Width) * int64(cfg.Height) * per
}

// thumbCache keeps the last thumbnails made (a few KB each).
type thumbCache struct {
	mu    sync.Mutex
	m     map[string][]byte
	order []string
}

const thumbCacheSize = 512

func (c *thumbCache) get(sha string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[sha]
}

func (c *thumbCache) put(sha string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	if _, ok := c.m[sha]; ok {
		return
	}
	if len(c.order) >= thumbCacheSize {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[sha] = b
	c.order = append(c.order, sha)
}

// file serves GET /f/{record}/{sha} (the file itself) and
// GET /f/{record}/{sha}/thumb (its thumbnail, JPEG, ThumbPixels on the
// longest side): signed in, the record in the asker's scope (as its row),
// naming the file; a refusal is audited as a page's is.
func (s *Server) file(thumb bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, err := s.session(r)
		if err != nil {
			s.internal(w, r, nil, err)
			return
		}
		lang := s.lang(w, r)
		if ss == nil {
			http.Redirect(w, r, "/signin?m=please&lang="+lang, http.StatusSeeOther)
			return
		}
		record, sha := r.PathValue("record"), r.PathValue("sha")
		ref, err := report.File(r.Context(), s.cfg.Model, report.Query{Lang: lang, Town: ss.who.Town}, record, sha)
		if err != nil {
			s.reportError(w, r, ss, "file "+record+"/"+sha, "", err)
			return
		}
		if s.cfg.Files == nil {
			s.fail(w, r, ss, http.StatusServiceUnavailable, msg(lang, "err_nofiles"))
			return
		}
		// Before the thumbnails' cache too: it is kept by hash, and
		// another record may name the same hash.
		if ok, err := s.cfg.Files.Proven(r.Context(), record, sha); err != nil {
			s.internal(w, r, ss, err)
			return
		} else if !ok {
			s.fail(w, r, ss, http.StatusNotFound, msg(lang, "err_notuploaded"))
			return
		}
		if thumb {
			s.thumbnail(w, r, ss, ref)
			return
		}
		h := w.Header()
		h.Set("Content-Type", ref.MediaType)
		h.Set("Content-Length", strconv.FormatInt(ref.Size, 10))
		h.Set("Cache-Control", "private, max-age=86400, immutable") // named by its hash
		h.Set("Content-Disposition", "inline; filename=\""+sha[:12]+ext(ref.MediaType)+"\"")
		// The first write sends the header: a file the server lacks is
		// found before it.
		n, err := s.cfg.Files.CopyFile(r.Context(), sha, w)
		switch {
		case errors.Is(err, ErrNoFile) && n == 0:
			h.Del("Content-Length")
			h.Del("Content-Disposition")
			h.Del("Cache-Control")
			s.fail(w, r, ss, http.StatusNotFound, msg(lang, "err_notuploaded"))
		case err != nil:
			s.cfg.Log.Error("hq web: file", "record", record, "sha256", sha, "sent", n, "err", err)
			if n == 0 {
				h.Del("Content-Length")
				h.Del("Content-Disposition")
				h.Del("Cache-Control")
				s.internal(w, r, ss, err)
			}
		}
	}
}

func ext(mediaType string) string {
	switch mediaType {
	case "image/jpeg":
		return ".jpg"
	case "image/png":
		return ".png"
	case "image/webp":
		return ".webp"
	case "application/pdf":
		return ".pdf"
	}
	return ""
}

func (s *Server) thumbnail(w http.ResponseWriter, r *http.Request, ss *session, ref *report.FileRef) {
	lang := s.lang(w, r)
	if !report.Thumbnailed(ref.MediaType) {
		http.Redirect(w, r, "/static/file.svg", http.StatusSeeOther)
		return
	}
	b := s.thumbs.get(ref.SHA256)
	if b == nil {
		// At most thumbSlots decoded at once: each holds its picture
		// (1.5 bytes a pixel for a JPEG, 18 MB for 12 MP).
		select {
		case thumbSlots <- struct{}{}:
			defer func() { <-thumbSlots }()
		case <-r.Context().Done():
			return
		}
		var err error
		b, err = makeThumbnail(r.Context(), s.cfg.Files, ref.SHA256)
		switch {
		case errors.Is(err, ErrNoFile):
			s.fail(w, r, ss, http.StatusNotFound, msg(lang, "err_notuploaded"))
			return
		case errors.Is(err, errNoThumbnail):
			s.cfg.Log.Info("hq web: no thumbnail", "sha256", ref.SHA256, "err", err)
			http.Redirect(w, r, "/static/file.svg", http.StatusSeeOther)
			return
		case err != nil:
			s.internal(w, r, ss, err)
			return
		}
		s.thumbs.put(ref.SHA256, b)
	}
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "private, max-age=86400, immutable")
	w.Write(b)
}

var errNoThumbnail = errors.New("no thumbnail")

// thumbSlots bounds the thumbnails being made at once (all pages of the
// process).
var thumbSlots = make(chan struct{}, 2)

// makeThumbnail decodes a JPEG or PNG file as it streams from files and
// scales it down (box filter) to ThumbPixels on its longest side, as JPEG.
func makeThumbnail(ctx context.Context, files Files, sha string) ([]byte, error) {
	pr, pw := io.Pipe()
	copied := make(chan error, 1)
	go func() {
		_, err := files.CopyFile(ctx, sha, pw)
		pw.CloseWithError(err)
		copied <- err
	}()
	img, err := decodeBounded(pr)
	pr.CloseWithError(errors.New("thumbnail read"))
	cerr := <-copied
	if errors.Is(cerr, ErrNoFile) {
		return nil, ErrNoFile
	}
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, Scale(img, ThumbPixels), &jpeg.Options{Quality: 80}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeBounded decodes an image whose header says at most
// MaxThumbnailSource pixels.
func decodeBounded(r io.Reader) (image.Image, error) {
	var head bytes.Buffer
	cfg, format, err := image.DecodeConfig(io.TeeReader(r, &head))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoThumbnail, err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxThumbnailSource || cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%w: %d×%d pixels, more than %d", errNoThumbnail, cfg.Width, cfg.Height, MaxThumbnailSource)
	}
	if n := thumbnailBytes(cfg, format); n > MaxThumbnailBytes {
		return nil, fmt.Errorf("%w: %d×%d %s pixels would take %d MB to decode, more than %d", errNoThumbnail, cfg.Width, cfg.Height, format, n>>20, MaxThumbnailBytes>>20)
	}
	img, _, err := image.Decode(io.MultiReader(&head, r))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoThumbnail, err)
	}
	return img, nil
}

// Scale scales img down to max pixels on its longest side (never up) by a
// box filter: each pixel of the result is the mean of the source pixels
// its box covers.
func Scale(img image.Image, max int) *image.RGBA {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	dw, dh := sw, sh
	if sw >= sh && sw > max {
		dw, dh = max, (sh*max+sw/2)/sw
	} else if sh > sw && sh > max {
		dw, dh = (sw*max+sh/2)/sh, max
	}
	dw, dh = maxInt(dw, 1), maxInt(dh, 1)
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	if yc, ok := img.(*image.YCbCr); ok {
		if sx, sy, ok := chromaStep(yc.SubsampleRatio); ok {
			scaleYCbCr(dst, yc, sx, sy)
			return dst
		}
	}
	for y := 0; y < dh; y++ {
		y0, y1 := b.Min.Y+y*sh/dh, b.Min.Y+(y+1)*sh/dh
		if y1 <= y0 {
			y1 = y0 + 1
		}
		for x := 0; x < dw; x++ {
			x0, x1 := b.Min.X+x*sw/dw, b.Min.X+(x+1)*sw/dw
			if x1 <= x0 {
				x1 = x0 + 1
			}
			var r, g, bl, a, n uint64
			for sy := y0; sy < y1; sy++ {
				for sx := x0; sx < x1; sx++ {
					cr, cg, cb, ca := pixel(img, sx, sy)
					r, g, bl, a, n = r+uint64(cr), g+uint64(cg), bl+uint64(cb), a+uint64(ca), n+1
				}
			}
			dst.SetRGBA(x, y, color.RGBA{uint8(r / n >> 8), uint8(g / n >> 8), uint8(bl / n >> 8), uint8(a / n >> 8)})
		}
	}
	return dst
}

// chromaStep is how many luma pixels share a chroma sample across and down.
func chromaStep(r image.YCbCrSubsampleRatio) (int, int, bool) {
	switch r {
	case image.YCbCrSubsampleRatio444:
		return 1, 1, true
	case image.YCbCrSubsampleRatio422:
		return 2, 1, true
	case image.YCbCrSubsampleRatio420:
		return 2, 2, true
	case image.YCbCrSubsampleRatio440:
		return 1, 2, true
	case image.YCbCrSubsampleRatio411:
		return 4, 1, true
	case image.YCbCrSubsampleRatio410:
		return 4, 2, true
	}
	return 0, 0, false
}

// scaleYCbCr is Scale for a JPEG's picture: each box's mean luma and
// chroma, read straight from the planes, converted to RGB once (the
// conversion is affine, so the mean converts as the pixels would).
func scaleYCbCr(dst *image.RGBA, yc *image.YCbCr, csx, csy int) {
	b := yc.Rect
	sw, sh := b.Dx(), b.Dy()
	dw, dh := dst.Rect.Dx(), dst.Rect.Dy()
	cx0, cy0 := b.Min.X/csx, b.Min.Y/csy
	for y := 0; y < dh; y++ {
		y0, y1 := b.Min.Y+y*sh/dh, b.Min.Y+(y+1)*sh/dh
		if y1 <= y0 {
			y1 = y0 + 1
		}
		for x := 0; x < dw; x++ {
			x0, x1 := b.Min.X+x*sw/dw, b.Min.X+(x+1)*sw/dw
			if x1 <= x0 {
				x1 = x0 + 1
			}
			var ys, n uint64
			for sy := y0; sy < y1; sy++ {
				row := yc.Y[(sy-b.Min.Y)*yc.YStride+(x0-b.Min.X) : (sy-b.Min.Y)*yc.YStride+(x1-b.Min.X)]
				for _, v := range row {
					ys += uint64(v)
				}
				n += uint64(len(row))
			}
			var cbs, crs, cn uint64
			for cy := y0 / csy; cy <= (y1-1)/csy; cy++ {
				off := (cy - cy0) * yc.CStride
				for cx := x0 / csx; cx <= (x1-1)/csx; cx++ {
					cbs += uint64(yc.Cb[off+cx-cx0])
					crs += uint64(yc.Cr[off+cx-cx0])
					cn++
				}
			}
			r, g, bl := color.YCbCrToRGB(uint8(ys/n), uint8(cbs/cn), uint8(crs/cn))
			dst.SetRGBA(x, y, color.RGBA{r, g, bl, 255})
		}
	}
}

// pixel reads one pixel as 16-bit premultiplied RGBA, without an interface
// conversion for a JPEG's YCbCr.
func pixel(img image.Image, x, y int) (r, g, b, a uint32) {
	if yc, ok := img.(*image.YCbCr); ok {
		yi, ci := yc.YOffset(x, y), yc.COffset(x, y)
		r8, g8, b8 := color.YCbCrToRGB(yc.Y[yi], yc.Cb[ci], yc.Cr[ci])
		return uint32(r8) * 0x101, uint32(g8) * 0x101, uint32(b8) * 0x101, 0xffff
	}
	return img.At(x, y).RGBA()
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
