// Package images tests the images the Makefile builds without Docker.
package images

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
)

// `make image-multiarch` writes one index with a linux/amd64 and a
// linux/arm64 image, each holding the binaries built for its architecture
// (/quota-operator, and /quota-sidecar, which the webhook injects), run as
// 65532 from /quota-operator.
func TestMultiArchImage(t *testing.T) {
	root := kubeenv.ModuleRoot()
	const img = "quotaops.local/quota-operator:multiarch-test"
	if out, err := exec.Command("make", "-C", root, "--no-print-directory", "image-multiarch", "IMG="+img).CombinedOutput(); err != nil {
		t.Fatalf("make image-multiarch: %v\n%s", err, out)
	}
	idx := multiArchIndex(t, filepath.Join(root, "bin", "images", "quota-operator-multiarch.tar"), img)
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	if len(m.Manifests) != len(machines) {
		t.Fatalf("%d images; want %d", len(m.Manifests), len(machines))
	}
	for _, d := range m.Manifests {
		arch := d.Platform.Architecture
		image, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := image.ConfigFile()
		if err != nil || cf.OS != "linux" || cf.Architecture != arch || cf.Config.User != "65532:65532" ||
			len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/quota-operator" {
			t.Fatalf("%s: config %+v, %v", arch, cf, err)
		}
		for _, bin := range []string{"quota-operator", "quota-sidecar"} {
			if got := binaryMachine(t, image, bin); got != machines[arch] {
				t.Errorf("%s: /%s is built for %v", arch, bin, got)
			}
		}
	}
}

// multiArchIndex opens the OCI layout tarball and returns the one index
// in it, which must be named img.
func multiArchIndex(t *testing.T, file, img string) v1.ImageIndex {
	t.Helper()
	dir := t.TempDir()
	untar(t, file, dir)
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	topManifest, err := top.IndexManifest()
	if err != nil || len(topManifest.Manifests) != 1 || topManifest.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != img {
		t.Fatalf("layout index %+v, %v; want one index named %s", topManifest, err, img)
	}
	idx, err := top.ImageIndex(topManifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func untar(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		raw, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// binaryMachine is the ELF machine of /name in image's layer.
func binaryMachine(t *testing.T, image interface {
	Layers() ([]v1.Layer, error)
}, name string) elf.Machine {
	t.Helper()
	layers, err := image.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no %s in the layer: %v", name, err)
		}
		if h.Name != name {
			continue
		}
		tmp := filepath.Join(t.TempDir(), "bin")
		raw, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tmp, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := elf.Open(tmp)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Close() }()
		return f.Machine
	}
}
