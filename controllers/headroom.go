package controllers

import (
	"context"
	"fmt"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/store"
)

// LowMemoryRatio is the share of Redis's maxmemory from which
// StoreHeadroom turns False: enough warning before Redis, under
// noeviction, refuses the writes every decision makes.
const LowMemoryRatio = 0.9

// MemoryReader reports the store's memory use; Redis has one, the memory
// store none.
type MemoryReader interface {
	MemoryUse(ctx context.Context) (store.MemoryUse, error)
}

// Headroom is the store's memory state, which every object reports as its
// StoreHeadroom condition. StoreWatch updates it.
type Headroom struct {
	state atomic.Pointer[headroomState]
}

type headroomState struct {
	status          metav1.ConditionStatus
	reason, message string
}

// update records u and reports whether the condition changed.
func (h *Headroom) update(u store.MemoryUse) bool {
	next := headroomFor(u)
	old := h.state.Swap(&next)
	return old == nil || *old != next
}

// headroomFor words the condition. Its message names no exact figure, so
// objects are not rewritten as the figure moves.
func headroomFor(u store.MemoryUse) headroomState {
	switch {
	case u.Max <= 0:
		return headroomState{metav1.ConditionUnknown, v1alpha1.ReasonNoMaxmemory,
			"Redis sets no maxmemory, so its headroom is unknown: it grows until its host runs out of memory"}
	case u.Ratio() >= LowMemoryRatio:
		node := ""
		if u.Node != "" {
			node = " " + u.Node
		}
		return headroomState{metav1.ConditionFalse, v1alpha1.ReasonLowMemory, fmt.Sprintf(
			"Redis%s uses over %.0f%% of its maxmemory (%d MiB); when full it refuses writes and every decision follows its failurePolicy: raise maxmemory or add shards",
			node, LowMemoryRatio*100, u.Max>>20)}
	}
	return headroomState{metav1.ConditionTrue, v1alpha1.ReasonEnoughMemory,
		fmt.Sprintf("Redis uses less than %.0f%% of its maxmemory", LowMemoryRatio*100)}
}

// apply sets StoreHeadroom in st once the store's memory is known.
func (h *Headroom) apply(st *v1alpha1.PolicyStatus, gen int64) {
	if h == nil {
		return
	}
	if s := h.state.Load(); s != nil {
		setCondition(st, gen, v1alpha1.ConditionStoreHeadroom, s.status, s.reason, s.message)
	}
}
