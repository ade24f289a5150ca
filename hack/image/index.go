package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// runIndex writes one image per architecture and an index of them, as an
// OCI image layout, tarred into out. The index is annotated with the tag,
// as `ctr images import` names what it imports.
func runIndex(tag, out, entrypoint, user string, specs, arches []string) error {
	if tag == "" || out == "" || len(specs) == 0 {
		return errors.New("--tag, --out and at least one --file are required")
	}
	if _, err := name.NewTag(tag); err != nil {
		return err
	}
	idx := mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
	for _, arch := range arches {
		files, err := parseFiles(archSpecs(specs, arch))
		if err != nil {
			return err
		}
		img, err := buildImage(files, entrypoint, user, arch)
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	dir, err := os.MkdirTemp("", "image-layout-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		return err
	}
	return tarDir(dir, out)
}

func archSpecs(specs []string, arch string) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = strings.ReplaceAll(s, "{arch}", arch)
	}
	return out
}

// tarDir writes the files under dir into a tarball at out, paths relative
// to dir.
func tarDir(dir, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		// Fixed times and owners: one build's layout is byte-identical to
		// the next (make release is reproducible).
		h.ModTime, h.AccessTime, h.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "root", "root"
		h.Mode = int64(info.Mode().Perm() | 0o444)
		if err := tw.WriteHeader(h); err != nil || info.IsDir() {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer func() { _ = src.Close() }()
		_, err = io.Copy(tw, src)
		return err
	})
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
