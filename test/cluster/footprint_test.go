//go:build cluster

package cluster

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/quotaops/quota-operator/internal/webhook"
)

// dropPageCache runs before the first sidecar starts: no process on the
// node runs quota-sidecar, and the kernel drops its clean page cache (the
// image's files, written when it was loaded), so the first sidecar faults
// its binary in and its cgroup is charged for it, as the first sidecar on
// a new node is.
func dropPageCache(t *testing.T) {
	t.Helper()
	if pids := sidecarProcesses(t, ""); len(pids) > 0 {
		t.Fatalf("quota-sidecar already runs on the node (%v): a sidecar started now would not be the first", pids)
	}
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0o200); err != nil {
		t.Fatal(err)
	}
}

// sidecarProcesses are the node's quota-sidecar processes, of the pod with
// uid when it is not empty, each with its memory cgroup's folder.
func sidecarProcesses(t *testing.T, uid string) map[int]string {
	t.Helper()
	out := map[int]string{}
	for pid, cgroup := range nodeProcesses(t, webhook.ContainerName, uid) {
		out[pid] = memoryCgroup(cgroup)
	}
	return out
}

// nodeProcesses are this node's processes named comm, of the pod with uid
// when it is not empty, each with its /proc/PID/cgroup.
func nodeProcesses(t *testing.T, comm, uid string) map[int]string {
	t.Helper()
	comms, err := filepath.Glob("/proc/[0-9]*/comm")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, f := range comms {
		name, _ := os.ReadFile(f)
		if strings.TrimSpace(string(name)) != comm {
			continue
		}
		raw, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "cgroup"))
		cgroup := string(raw)
		if uid != "" && !strings.Contains(cgroup, uid) && !strings.Contains(cgroup, strings.ReplaceAll(uid, "-", "_")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		out[pid] = cgroup
	}
	return out
}

// memoryCgroup is the folder of the memory cgroup in /proc/PID/cgroup: the
// v1 memory controller's (this node has hybrid cgroups), else v2's.
func memoryCgroup(procCgroup string) string {
	for _, line := range strings.Split(procCgroup, "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && parts[1] == "memory" {
			return filepath.Join("/sys/fs/cgroup/memory", parts[2])
		}
	}
	for _, line := range strings.Split(procCgroup, "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join("/sys/fs/cgroup", path)
		}
	}
	return ""
}

// cgroupMemory is a container's memory as its cgroup counts it, in bytes:
// the peak, the limit, and the file pages mapped (its binary's, when it
// was the first to touch them).
type cgroupMemory struct{ peak, limit, mappedFile int64 }

func readCgroupMemory(t *testing.T, dir string) cgroupMemory {
	t.Helper()
	number := func(names ...string) int64 {
		for _, name := range names {
			if raw, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				n, _ := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
				return n
			}
		}
		t.Fatalf("none of %v in %s", names, dir)
		return 0
	}
	m := cgroupMemory{peak: number("memory.max_usage_in_bytes", "memory.peak"), limit: number("memory.limit_in_bytes", "memory.max")}
	stat, err := os.Open(filepath.Join(dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stat.Close() }()
	for s := bufio.NewScanner(stat); s.Scan(); {
		if f := strings.Fields(s.Text()); len(f) == 2 && (f[0] == "mapped_file" || f[0] == "file_mapped") {
			m.mappedFile, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return m
}

func mebibytes(n int64) float64 { return float64(n) / (1 << 20) }

// expectSmallFootprint: the workload's sidecars have the webhook's default
// resources; the first one on the node (charged for its binary) serves
// 3,000 requests of 500 tenants, exactly 5 each, with no restart and its
// cgroup's peak under half its memory limit. It reports how long the
// sidecar took from its start to its config loaded (Ready).
func expectSmallFootprint(t *testing.T) {
	want := fmt.Sprintf(`{"limits":{"memory":"%s"},"requests":{"cpu":"%s","memory":"%s"}}`,
		webhook.DefaultMemory, webhook.DefaultCPU, webhook.DefaultMemory)
	var first, firstIP, firstDir string
	var firstMem cgroupMemory
	for name, ip := range apiPods(t) {
		res := kubectl(t, "-n", appNS, "get", "pod", name, "-o",
			`jsonpath={.spec.initContainers[?(@.name=="`+webhook.ContainerName+`")].resources}`)
		if res != want {
			t.Fatalf("pod %s's sidecar has resources %s, want %s", name, res, want)
		}
		uid := kubectl(t, "-n", appNS, "get", "pod", name, "-o", "jsonpath={.metadata.uid}")
		for _, dir := range sidecarProcesses(t, uid) {
			if m := readCgroupMemory(t, dir); first == "" || m.mappedFile > firstMem.mappedFile {
				first, firstIP, firstDir, firstMem = name, ip, dir, m
			}
		}
		reportStartToReady(t, name)
	}
	// The binary's text, over 8 MiB of it, is charged to one of them.
	if firstMem.mappedFile < 8<<20 {
		t.Fatalf("no sidecar's cgroup is charged for the binary (most: %s, %.1f MiB mapped): none was first on the node", first, mebibytes(firstMem.mappedFile))
	}
	answers, err := clientRunHeader("http://"+firstIP+":8000/", tenantHeader+"=load", 3000, false, "--vary=500")
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[int]int{}
	for _, a := range answers {
		statuses[a.Status]++
	}
	if statuses[200] != 2500 || statuses[429] != 500 {
		t.Fatalf("3,000 requests of 500 tenants at 5 each: %v, want 2500 × 200 and 500 × 429", statuses)
	}
	m := readCgroupMemory(t, firstDir)
	t.Logf("pod %s's sidecar, first on the node: cgroup peak %.1f MiB of its %.0f MiB limit after 3,000 requests (%.1f MiB of its binary mapped)",
		first, mebibytes(m.peak), mebibytes(m.limit), mebibytes(m.mappedFile))
	if m.peak*2 >= m.limit {
		t.Fatalf("the sidecar's cgroup peaked at %.1f MiB, not under half its %.0f MiB limit", mebibytes(m.peak), mebibytes(m.limit))
	}
	restarts := kubectl(t, "-n", appNS, "get", "pod", first, "-o",
		`jsonpath={.status.initContainerStatuses[?(@.name=="`+webhook.ContainerName+`")].restartCount}`)
	if restarts != "0" {
		t.Fatalf("the sidecar restarted %s times", restarts)
	}
}

// reportStartToReady logs the time from the sidecar's process start to
// its first config loaded, which is when it answers ready, as it logs it.
func reportStartToReady(t *testing.T, pod string) {
	t.Helper()
	for _, line := range strings.Split(kubectl(t, "-n", appNS, "logs", pod, "-c", webhook.ContainerName), "\n") {
		var entry struct {
			Msg        string `json:"msg"`
			SinceStart string `json:"sinceStart"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "Config loaded" && entry.SinceStart != "" {
			t.Logf("pod %s's sidecar: config loaded (Ready) %s after its process started", pod, entry.SinceStart)
			return
		}
	}
	t.Fatalf("pod %s's sidecar never logged its first config loaded", pod)
}
