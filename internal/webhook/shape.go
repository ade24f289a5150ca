package webhook

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// firstNativeSidecars is the first release that runs init containers with
// restartPolicy Always as sidecars by default (the SidecarContainers
// feature, beta and on in 1.29, GA in 1.33).
var firstNativeSidecars = version.MustParseGeneric("1.29.0")

// NativeSidecars asks the API server at cfg whether it runs native
// sidecars, so that injection picks the shape the cluster supports.
func NativeSidecars(cfg *rest.Config) (bool, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, err
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return false, fmt.Errorf("the API server's version: %w", err)
	}
	return supportsNativeSidecars(info.GitVersion)
}

func supportsNativeSidecars(gitVersion string) (bool, error) {
	v, err := version.ParseGeneric(gitVersion)
	if err != nil {
		return false, fmt.Errorf("the API server's version %q: %w", gitVersion, err)
	}
	return v.AtLeast(firstNativeSidecars), nil
}
