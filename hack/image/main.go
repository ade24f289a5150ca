// Command image writes a one-layer container image, as `docker save` would,
// from files already built on this machine: no Docker engine, no registry,
// no base image. `make image` uses it for the operator's image; the one-node
// cluster (hack/cluster.sh) for its pause, CoreDNS and Redis images, which
// it then imports into containerd.
//
//	image --tag quotaops.local/quota-operator:dev --out op.tar \
//	  --file bin/quota-operator=/quota-operator --entrypoint /quota-operator --user 65532:65532
//
// --with-libs adds the shared libraries each file links, as ldd reports
// them, so a dynamically linked program from Debian runs in the image.
//
// --arch amd64,arm64 writes one image per architecture, each from the
// files with {arch} in their source path replaced, and an index naming
// them all, as an OCI image layout in a tarball (what registries and
// `ctr images import` take for a multi-architecture image).
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var files fileList
	tag := flag.String("tag", "", "image name and tag")
	out := flag.String("out", "", "tarball to write")
	entrypoint := flag.String("entrypoint", "", "the image's entrypoint")
	user := flag.String("user", "", "user:group the image runs as")
	withLibs := flag.Bool("with-libs", false, "add the shared libraries of every file, as ldd lists them")
	arches := flag.String("arch", "", "comma-separated architectures: one image each and an index (an OCI layout tarball); empty: amd64 alone, as docker save writes it")
	flag.Var(&files, "file", "SRC=DST: a file on this machine and its path in the image (repeatable); {arch} in SRC stands for each --arch")
	flag.Parse()
	var err error
	if *arches != "" {
		err = runIndex(*tag, *out, *entrypoint, *user, files, strings.Split(*arches, ","))
	} else {
		err = run(*tag, *out, *entrypoint, *user, files, *withLibs)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func run(tag, out, entrypoint, user string, specs []string, withLibs bool) error {
	if tag == "" || out == "" || len(specs) == 0 {
		return errors.New("--tag, --out and at least one --file are required")
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	files, err := parseFiles(specs)
	if err != nil {
		return err
	}
	if withLibs {
		if files, err = addLibraries(files); err != nil {
			return err
		}
	}
	img, err := buildImage(files, entrypoint, user, "amd64")
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, img)
}

// buildImage is one layer of files, configured for arch.
func buildImage(files map[string]string, entrypoint, user, arch string) (v1.Image, error) {
	layer, err := tarLayer(files)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	return configure(img, entrypoint, user, arch)
}

// parseFiles maps image paths to paths on this machine.
func parseFiles(specs []string) (map[string]string, error) {
	files := map[string]string{}
	for _, s := range specs {
		src, dst, ok := strings.Cut(s, "=")
		if !ok || src == "" || !path.IsAbs(dst) {
			return nil, fmt.Errorf("--file %q: want SRC=/absolute/destination", s)
		}
		files[path.Clean(dst)] = src
	}
	return files, nil
}

// lddLine matches "libx.so => /path (0x...)" and "/lib64/ld-linux... (0x...)".
var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// addLibraries adds every library ldd lists for the files, at the path the
// dynamic loader will look for it.
func addLibraries(files map[string]string) (map[string]string, error) {
	all := map[string]string{}
	for dst, src := range files {
		all[dst] = src
		out, err := exec.Command("ldd", src).Output()
		if err != nil {
			// A static binary: ldd exits 1 and there is nothing to add.
			continue
		}
		for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
			all[m[1]] = m[1]
		}
	}
	return all, nil
}

// tarLayer is one layer with the files (symlinks followed), their parent
// directories, and a /tmp; times are fixed so the same inputs give the same
// image.
func tarLayer(files map[string]string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{"tmp": true}
	dsts := make([]string, 0, len(files))
	for dst := range files {
		dsts = append(dsts, dst)
		for d := path.Dir(dst); d != "/"; d = path.Dir(d) {
			dirs[strings.TrimPrefix(d, "/")] = true
		}
	}
	sort.Strings(dsts)
	for _, d := range sortedKeys(dirs) {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	for _, dst := range dsts {
		if err := addFile(tw, files[dst], strings.TrimPrefix(dst, "/"), epoch); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
}

func addFile(tw *tar.Writer, src, dst string, mtime time.Time) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: dst, Mode: int64(info.Mode().Perm()), Size: int64(len(data)), ModTime: mtime}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = tw.Write(data)
	return err
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func configure(img v1.Image, entrypoint, user, arch string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.User = user
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if entrypoint != "" {
		cf.Config.Entrypoint = []string{entrypoint}
	}
	return mutate.ConfigFile(img, cf)
}
