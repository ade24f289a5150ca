package webhook

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LegacyUsageAPIService is the APIService through which releases before
// QuotaQuery served kubectl quota's reads.
const LegacyUsageAPIService = "v1alpha1.usage.quotaops.dev"

// +kubebuilder:rbac:groups=apiregistration.k8s.io,resources=apiservices,resourceNames=v1alpha1.usage.quotaops.dev,verbs=delete

// RemoveLegacyAPIService deletes the APIService an earlier release
// registered, if it is still there. Nothing serves it any more, and an
// unavailable aggregated API holds every namespace deletion in the cluster
// (NamespaceDeletionDiscoveryFailure); `kubectl apply` of a new release
// does not prune it, and Helm removes it only on upgrade. It reports
// whether it deleted one.
func RemoveLegacyAPIService(ctx context.Context, c client.Client) (bool, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiregistration.k8s.io", Version: "v1", Kind: "APIService"})
	u.SetName(LegacyUsageAPIService)
	err := c.Delete(ctx, u)
	if err == nil {
		return true, nil
	}
	return false, client.IgnoreNotFound(err)
}
