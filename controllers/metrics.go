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
	usageTopUsedRatio = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "quota_usage_top_used_ratio", Help: "The largest share of its own limit any subject of a UsageQuota used in its current period (1: at the limit).",
	}, []string{"namespace", "name"})
	// The fullest Redis master's memory, as StoreWatch last read it.
	storeUsedMemory = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "quota_store_used_memory_bytes", Help: "used_memory of the Redis master nearest its maxmemory.",
	})
	storeMaxMemory = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "quota_store_maxmemory_bytes", Help: "maxmemory of that Redis master (0: none).",
	})
	// Losses of a namespace's counters the manager found.
	storeDataLost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quota_store_data_lost_total",
		Help: "Times the store was found without a namespace's config and counters that it held (a flush, a restart without its data, a failover to an empty replica).",
	}, []string{"namespace"})
)

func init() {
	metrics.Registry.MustRegister(usageSubjects, usageMaxSubjects, usageConsumed, usageTopUsedRatio, storeUsedMemory, storeMaxMemory, storeDataLost)
}

func recordUsage(namespace, name string, subjects, maxSubjects, consumed int64, topUsedRatio float64) {
	usageSubjects.WithLabelValues(namespace, name).Set(float64(subjects))
	usageMaxSubjects.WithLabelValues(namespace, name).Set(float64(maxSubjects))
	usageConsumed.WithLabelValues(namespace, name).Set(float64(consumed))
	usageTopUsedRatio.WithLabelValues(namespace, name).Set(topUsedRatio)
}

func forgetUsage(namespace, name string) {
	for _, g := range []*prometheus.GaugeVec{usageSubjects, usageMaxSubjects, usageConsumed, usageTopUsedRatio} {
		g.DeleteLabelValues(namespace, name)
	}
}
