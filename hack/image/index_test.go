package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An image layout written twice from the same files is byte-identical,
// whatever the files' times and owners: make release is reproducible.
func TestTarDirIsReproducible(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"oci-layout": `{"imageLayoutVersion":"1.0.0"}`, "index.json": "{}", "blobs/sha256/ab": "blob"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	first := filepath.Join(t.TempDir(), "a.tar")
	if err := tarDir(dir, first); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "index.json"), later, later); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(t.TempDir(), "b.tar")
	if err := tarDir(dir, second); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatal("the same files gave two different layouts")
	}
}
