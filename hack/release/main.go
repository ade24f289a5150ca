// Command release writes the parts of a release that `make release` does
// not build with other tools: the packaged Helm chart, the kubectl
// plugin's archives and its krew manifest, and SHA256SUMS over dist/.
// Every archive is written with fixed times, owners and order, so one
// commit and version give byte-identical files.
//
//	release --version v0.2.0 --registry ghcr.io/quotaops --dist dist \
//	  --chart charts/quota-operator --plugins bin/release \
//	  --platforms "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"
//
// A version may carry a pre-release (v0.3.0-rc.1, SemVer 2.0); its chart
// version is the same without the v.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// defaultPlatforms are the kubectl plugin's, as make release builds them.
const defaultPlatforms = "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"

// semver is vX.Y.Z with an optional pre-release; no build metadata, since
// "+" is not allowed in an image tag.
var semver = regexp.MustCompile(`^v((?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)$`)

// options are the flags.
type options struct {
	version, registry, dist, chart, plugins, download string
	// platforms are the plugin's, os-arch, as bin/release holds them.
	platforms []string
}

func main() {
	version := flag.String("version", "", "the release, vX.Y.Z")
	registry := flag.String("registry", "", "where the image is pushed, host/path")
	dist := flag.String("dist", "dist", "the folder to write to")
	chart := flag.String("chart", "charts/quota-operator", "the chart's folder")
	plugins := flag.String("plugins", "bin/release", "the plugin's builds, <os>-<arch>/kubectl-quota")
	download := flag.String("download-url", "https://github.com/quotaops/quota-operator/releases/download", "where the release's files are downloaded from, for the krew manifest")
	platforms := flag.String("platforms", defaultPlatforms, "the plugin's platforms, os/arch, separated by spaces")
	flag.Parse()
	o := options{version: *version, registry: *registry, dist: *dist, chart: *chart, plugins: *plugins, download: *download}
	for _, p := range strings.Fields(*platforms) {
		o.platforms = append(o.platforms, strings.Replace(p, "/", "-", 1))
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	m := semver.FindStringSubmatch(o.version)
	if m == nil {
		return fmt.Errorf("version %q is not vX.Y.Z (or vX.Y.Z-pre.release)", o.version)
	}
	if o.registry == "" || strings.HasSuffix(o.registry, "/") {
		return errors.New("registry must be host/path, such as ghcr.io/quotaops")
	}
	if len(o.platforms) == 0 {
		return errors.New("no plugin platform given")
	}
	if err := packageChart(o.chart, o.dist, m[1], o.version, o.registry+"/quota-operator"); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	sums := make([]string, len(o.platforms))
	for i, p := range o.platforms {
		name := fmt.Sprintf("kubectl-quota-%s-%s.tar.gz", o.version, p)
		sum, err := pluginArchive(filepath.Join(o.plugins, p, "kubectl-quota"), filepath.Join(o.dist, name))
		if err != nil {
			return fmt.Errorf("plugin %s: %w", p, err)
		}
		sums[i] = sum
	}
	if err := stampSBOM(filepath.Join(o.dist, "quota-operator-"+o.version+".sbom.cdx.json"), module, o.version); err != nil {
		return fmt.Errorf("SBOM: %w", err)
	}
	manifest := krewManifest(o.version, o.download, o.platforms, sums)
	if err := os.WriteFile(filepath.Join(o.dist, "krew-quota.yaml"), manifest, 0o644); err != nil {
		return err
	}
	return checksums(o.dist)
}

// module is the Go module the SBOM describes.
const module = "github.com/quotaops/quota-operator"

// stampSBOM gives the SBOM's main component the release's version, when
// make release wrote one. cyclonedx-gomod takes it from git: a
// pseudo-version of the newest tag's commit on a commit after it, and
// none in a git worktree. The component's bom-ref changes with it, in the
// dependency graph too.
func stampSBOM(file, module, version string) error {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var bom map[string]any
	if err := json.Unmarshal(data, &bom); err != nil {
		return err
	}
	meta, _ := bom["metadata"].(map[string]any)
	component, _ := meta["component"].(map[string]any)
	if component == nil || component["name"] != module {
		return fmt.Errorf("%s: no metadata.component named %s", file, module)
	}
	oldRef, _ := component["bom-ref"].(string)
	purl, _ := component["purl"].(string)
	_, qualifiers, _ := strings.Cut(purl, "?")
	base := "pkg:golang/" + module + "@" + version
	newRef := base + "?type=module"
	if qualifiers != "" {
		qualifiers = "?" + qualifiers
	}
	component["version"], component["bom-ref"], component["purl"] = version, newRef, base+qualifiers
	deps, _ := bom["dependencies"].([]any)
	for _, d := range deps {
		dep, _ := d.(map[string]any)
		if dep == nil {
			continue
		}
		if dep["ref"] == oldRef {
			dep["ref"] = newRef
		}
		on, _ := dep["dependsOn"].([]any)
		for i := range on {
			if on[i] == oldRef {
				on[i] = newRef
			}
		}
	}
	out, err := json.MarshalIndent(bom, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append(out, '\n'), 0o644)
}

// epoch is every archive entry's time.
var epoch = time.Unix(0, 0).UTC()

// tgz is a gzipped tarball built in memory with fixed headers.
type tgz struct {
	buf bytes.Buffer
	gz  *gzip.Writer
	tw  *tar.Writer
}

func newTgz() *tgz {
	t := &tgz{}
	t.gz, _ = gzip.NewWriterLevel(&t.buf, gzip.BestCompression) // no name, no time in its header
	t.tw = tar.NewWriter(t.gz)
	return t
}

func (t *tgz) add(name string, mode int64, data []byte) error {
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch,
		Uname: "root", Gname: "root", Format: tar.FormatPAX}
	if err := t.tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := t.tw.Write(data)
	return err
}

func (t *tgz) write(file string) error {
	if err := t.tw.Close(); err != nil {
		return err
	}
	if err := t.gz.Close(); err != nil {
		return err
	}
	return os.WriteFile(file, t.buf.Bytes(), 0o644)
}

// packageChart writes dist/<name>-<chartVersion>.tgz as `helm package`
// lays it out (every file under "<name>/"), with the chart's version and
// appVersion set and its image defaulting to repository at appVersion.
func packageChart(dir, dist, chartVersion, appVersion, repository string) error {
	name := filepath.Base(dir)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	t := newTgz()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, f)
		switch filepath.ToSlash(rel) {
		case "Chart.yaml":
			data, err = setField(data, "version", chartVersion)
			if err == nil {
				data, err = setField(data, "appVersion", `"`+appVersion+`"`)
			}
		case "values.yaml":
			data, err = setImageRepository(data, repository)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if err := t.add(path.Join(name, filepath.ToSlash(rel)), 0o644, data); err != nil {
			return err
		}
	}
	return t.write(filepath.Join(dist, fmt.Sprintf("%s-%s.tgz", name, chartVersion)))
}

// setField replaces a top-level "key: value" line of a YAML document.
func setField(doc []byte, key, value string) ([]byte, error) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `:.*$`)
	if !re.Match(doc) {
		return nil, fmt.Errorf("no top-level %s", key)
	}
	return re.ReplaceAll(doc, []byte(key+": "+value)), nil
}

// setImageRepository sets image.repository, the first "  repository:"
// line after the top-level "image:".
func setImageRepository(doc []byte, repository string) ([]byte, error) {
	re := regexp.MustCompile(`(?m)^(image:\n(?:[ \t]*#.*\n)*[ \t]+repository:).*$`)
	if !re.Match(doc) {
		return nil, errors.New("no image.repository")
	}
	return re.ReplaceAll(doc, []byte("${1} "+repository)), nil
}

// pluginArchive writes the plugin binary, as kubectl-quota, to a tarball
// and returns its SHA-256.
func pluginArchive(bin, out string) (string, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	t := newTgz()
	if err := t.add("kubectl-quota", 0o755, data); err != nil {
		return "", err
	}
	if err := t.write(out); err != nil {
		return "", err
	}
	return fileSum(out)
}

func fileSum(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// krewManifest is the plugin's krew manifest: one platform per archive,
// with its download address and checksum.
func krewManifest(version, download string, platforms, sums []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: quota
spec:
  version: %s
  homepage: https://github.com/quotaops/quota-operator
  shortDescription: See and change quota-operator's rate-limit and quota counters
  description: |
    Shows what subjects used of a RateLimitPolicy or UsageQuota, checks
    whether a request would pass, and resets counters or grants units
    through QuotaAdjustments, with the cluster's RBAC.
  platforms:
`, version)
	for i, p := range platforms {
		goos, goarch, _ := strings.Cut(p, "-")
		fmt.Fprintf(&b, `    - selector:
        matchLabels: {os: %s, arch: %s}
      uri: %s/%s/kubectl-quota-%s-%s.tar.gz
      sha256: %s
      bin: kubectl-quota
`, goos, goarch, strings.TrimSuffix(download, "/"), version, version, p, sums[i])
	}
	return []byte(b.String())
}

// checksums writes dist/SHA256SUMS over every other file in dist, in
// `sha256sum -c` form.
func checksums(dist string) error {
	entries, err := os.ReadDir(dist)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, e := range entries { // ReadDir sorts by name
		if e.IsDir() || e.Name() == "SHA256SUMS" {
			continue
		}
		sum, err := fileSum(filepath.Join(dist, e.Name()))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, e.Name())
	}
	return os.WriteFile(filepath.Join(dist, "SHA256SUMS"), []byte(b.String()), 0o644)
}
