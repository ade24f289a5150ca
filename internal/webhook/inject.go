// Package webhook injects the quota sidecar into opted-in pods. inject.go
// is the mutation itself, a pure function of the pod and the operator's
// settings; the admission plumbing wraps it.
package webhook

import (
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Names in the contract (DESIGN §5).
const (
	// AnnotationInject on a pod: "true" opts in, "false" opts out even in an
	// opted-in namespace.
	AnnotationInject = "quotaops.dev/inject"
	// LabelInject on a namespace: "enabled" opts its pods in.
	LabelInject = "quotaops.dev/inject"
	// AnnotationUpstreamPort names the app's port (a number or a port name).
	AnnotationUpstreamPort = "quotaops.dev/upstream-port"
	// AnnotationProxyPort overrides the sidecar's proxy port (default 8000).
	AnnotationProxyPort = "quotaops.dev/proxy-port"
	// AnnotationAdminPort moves the sidecar's loopback admin listener
	// (health, metrics, the local API; default 9901) off a port the app
	// uses.
	AnnotationAdminPort = "quotaops.dev/admin-port"
	// AnnotationFailurePolicy ("Open" or "Closed") overrides the
	// failurePolicy of every policy in this pod.
	AnnotationFailurePolicy = "quotaops.dev/failure-policy"
	// AnnotationCPU and AnnotationMemory override the sidecar's requests
	// (and the memory limit).
	AnnotationCPU    = "quotaops.dev/sidecar-cpu"
	AnnotationMemory = "quotaops.dev/sidecar-memory"

	ContainerName = "quota-sidecar"
	PortName      = "quota-proxy"
	labelsVolume  = "quota-pod-labels"
	labelsDir     = "/etc/quota"
	policyVolume  = "quota-policies"
	policyDir     = "/etc/quota-policies"
)

// Config is what the operator puts into every sidecar.
type Config struct {
	// Image is the manager's own image: operator and sidecar run one
	// version.
	Image string
	// Store is the store URL, without a password.
	Store string
	// PasswordSecret names the Secret, in the pod's namespace, whose
	// "password" key holds the store password; empty when there is none.
	PasswordSecret string
	// PolicyConfigMap, when set, names a ConfigMap in the pod's namespace
	// whose .yaml keys hold the policies the sidecar enforces (its
	// --policy-file). Without Redis the manager's memory is out of the
	// sidecars' reach, so this is where their policies come from.
	PolicyConfigMap string
}

// Inject adds the sidecar to pod when it opted in, and reports whether it
// changed the pod. A pod that has the sidecar already is left as it is, so
// a second pass changes nothing.
func Inject(pod *corev1.Pod, namespaceOptedIn bool, cfg Config) (bool, error) {
	if !optedIn(pod, namespaceOptedIn) || HasSidecar(pod) {
		return false, nil
	}
	upstream, err := upstreamPort(pod)
	if err != nil {
		return false, err
	}
	proxy, err := annotationPort(pod, AnnotationProxyPort, 8000)
	if err != nil {
		return false, err
	}
	admin, err := annotationPort(pod, AnnotationAdminPort, 0)
	if err != nil {
		return false, err
	}
	res, err := resources(pod)
	if err != nil {
		return false, err
	}
	c := sidecar(cfg, upstream, proxy, res)
	if admin != 0 {
		c.Args = append(c.Args, "--admin-listen=127.0.0.1:"+strconv.Itoa(int(admin)))
	}
	switch fp, set := pod.Annotations[AnnotationFailurePolicy]; {
	case !set:
	case fp == "Open" || fp == "Closed":
		c.Args = append(c.Args, "--failure-policy="+fp)
	default:
		return false, fmt.Errorf("annotation %s: %q is neither Open nor Closed", AnnotationFailurePolicy, fp)
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: labelsVolume, VolumeSource: corev1.VolumeSource{
		DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		}},
	}})
	if cfg.PolicyConfigMap != "" {
		c.Args = append(c.Args, "--policy-file="+policyDir)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: policyVolume, MountPath: policyDir, ReadOnly: true})
		// Optional: a namespace without the ConfigMap gets no policies,
		// not a pod stuck in ContainerCreating.
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: policyVolume, VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cfg.PolicyConfigMap},
				Optional: ptr.To(true)},
		}})
	}
	pod.Spec.Containers = append(pod.Spec.Containers, c)
	return true, nil
}

func optedIn(pod *corev1.Pod, namespaceOptedIn bool) bool {
	switch pod.Annotations[AnnotationInject] {
	case "true":
		return true
	case "false":
		return false
	}
	return namespaceOptedIn
}

// HasSidecar reports whether pod runs the quota sidecar.
func HasSidecar(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == ContainerName {
			return true
		}
	}
	return false
}

// upstreamPort resolves the annotation (a number or the name of an app
// container's port), else the first port of the first container.
func upstreamPort(pod *corev1.Pod) (int32, error) {
	want, set := pod.Annotations[AnnotationUpstreamPort]
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if !set || p.Name == want {
				return p.ContainerPort, nil
			}
		}
	}
	if set {
		if n, err := annotationPort(pod, AnnotationUpstreamPort, 0); err == nil {
			return n, nil
		}
		return 0, fmt.Errorf("annotation %s: %q is neither a port number nor the name of a container port", AnnotationUpstreamPort, want)
	}
	return 0, fmt.Errorf("no container port to put the sidecar in front of: set the %s annotation", AnnotationUpstreamPort)
}

func annotationPort(pod *corev1.Pod, key string, def int32) (int32, error) {
	v, ok := pod.Annotations[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("annotation %s: %q is not a port number (1-65535)", key, v)
	}
	return int32(n), nil
}

func resources(pod *corev1.Pod) (corev1.ResourceRequirements, error) {
	cpu, mem := resource.MustParse("50m"), resource.MustParse("64Mi")
	for key, q := range map[string]*resource.Quantity{AnnotationCPU: &cpu, AnnotationMemory: &mem} {
		if v, ok := pod.Annotations[key]; ok {
			parsed, err := resource.ParseQuantity(v)
			if err != nil || parsed.Sign() <= 0 {
				return corev1.ResourceRequirements{}, errors.New("annotation " + key + ": " + strconv.Quote(v) + " is not a positive quantity")
			}
			*q = parsed
		}
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: mem},
	}, nil
}

func sidecar(cfg Config, upstream, proxy int32, res corev1.ResourceRequirements) corev1.Container {
	env := []corev1.EnvVar{{Name: "QUOTA_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		// The sidecar trades heap for CPU (GOGC 400); the Go runtime keeps
		// the heap under 80% of the memory limit however that goes.
		{Name: "GOMEMLIMIT", Value: strconv.FormatInt(res.Limits.Memory().Value()*8/10, 10) + "B"}}
	if cfg.PasswordSecret != "" {
		env = append(env, corev1.EnvVar{Name: "QUOTA_STORE_PASSWORD", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: cfg.PasswordSecret}, Key: "password"}}})
	}
	// The admin listener stays on loopback (its API is the pod's own), so
	// the kubelet probes the proxy port.
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString(PortName)}},
		PeriodSeconds: 5}
	return corev1.Container{
		Name:  ContainerName,
		Image: cfg.Image,
		Args: []string{"sidecar",
			"--listen=:" + strconv.Itoa(int(proxy)),
			"--upstream=http://127.0.0.1:" + strconv.Itoa(int(upstream)),
			"--pod-labels-file=" + labelsDir + "/labels",
			"--store=" + cfg.Store,
		},
		Env:            env,
		Ports:          []corev1.ContainerPort{{Name: PortName, ContainerPort: proxy, Protocol: corev1.ProtocolTCP}},
		Resources:      res,
		VolumeMounts:   []corev1.VolumeMount{{Name: labelsVolume, MountPath: labelsDir, ReadOnly: true}},
		ReadinessProbe: probe,
		LivenessProbe:  probe,
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To[int64](65532),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}
