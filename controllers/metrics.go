package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Quota usage as the manager last read it, per UsageQuota: what an alert
// on a quota nearing its subject bound, or its limit, reads.
var (
	usageSubjects = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "quota_usage_subjects", Help: "Subjects a UsageQuota tracks in its current period.",
	}, []string{"namespace", "name"})
	usageMaxSubjects = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "quota_usage_max_subjects", Help: "A UsageQuota's spec.maxSubjects: new subjects beyond it are denied.",
	}, []string{"namespace", "name"})
	usageConsumed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "quota_usage_consumed", Help: "Units all subjects of a UsageQuota consumed in its current period.",
	}, []string{"namespace", "name"})
)

func init() {
	metrics.Registry.MustRegister(usageSubjects, usageMaxSubjects, usageConsumed)
}

func recordUsage(namespace, name string, subjects, maxSubjects, consumed int64) {
	usageSubjects.WithLabelValues(namespace, name).Set(float64(subjects))
	usageMaxSubjects.WithLabelValues(namespace, name).Set(float64(maxSubjects))
	usageConsumed.WithLabelValues(namespace, name).Set(float64(consumed))
}

func forgetUsage(namespace, name string) {
	for _, g := range []*prometheus.GaugeVec{usageSubjects, usageMaxSubjects, usageConsumed} {
		g.DeleteLabelValues(namespace, name)
	}
}
