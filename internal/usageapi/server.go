package usageapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/targets"
)

// Counters is what the API reads of the store.
type Counters interface {
	Decide(ctx context.Context, req limiter.Request) (limiter.Decision, error)
	Usage(ctx context.Context, key limiter.CounterKey, start time.Time, top int) (limiter.Usage, error)
	Subjects(ctx context.Context, key limiter.CounterKey, maxKeys int64) ([]string, bool, error)
	// ForgetKnown drops the denials the limiter remembers, so a check
	// reads the store, never this process's memory.
	ForgetKnown()
}

// Authenticator admits a request the API server forwarded; its error says
// why another is refused.
type Authenticator interface {
	Authenticate(r *http.Request) (user string, err error)
}

// Server serves the API.
type Server struct {
	// Reader reads the policies the counters belong to.
	Reader client.Reader
	// Counters is nil when counters are per pod (no Redis).
	Counters Counters
	Auth     Authenticator
	// MaxScan bounds the keys one limit's usage examines (default 100,000).
	MaxScan int64
	// Timeout bounds the store calls of one request (default 5s).
	Timeout time.Duration
	Now     func() time.Time
	Log     logr.Logger
}

// Prefix is the path the API is served under.
const Prefix = "/apis/" + Group + "/" + Version

// Defaults and bounds of a usage read.
const (
	defaultTop     = 10
	maxTop         = limiter.MaxTop
	defaultMaxScan = 100_000
)

// Handler routes the API, behind Auth.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix, s.discovery)
	mux.HandleFunc("GET "+Prefix+"/namespaces/{namespace}/usagequotas/{name}", s.quotaUsage)
	mux.HandleFunc("GET "+Prefix+"/namespaces/{namespace}/ratelimitpolicies/{name}", s.limitUsage)
	mux.HandleFunc("POST "+Prefix+"/namespaces/{namespace}/checks", s.check)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := s.Auth.Authenticate(r)
		if err != nil {
			s.Log.V(1).Info("Request refused", "path", r.URL.Path, "reason", err.Error())
			writeStatus(w, apierrors.NewUnauthorized("only the API server may call this API: "+err.Error()))
			return
		}
		s.Log.V(1).Info("Usage API request", "user", user, "method", r.Method, "path", r.URL.Path)
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	resource := func(name, kind string, verbs ...string) metav1.APIResource {
		return metav1.APIResource{Name: name, Namespaced: true, Kind: kind, Verbs: verbs}
	}
	writeJSON(w, http.StatusOK, &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: Group + "/" + Version,
		APIResources: []metav1.APIResource{
			resource("usagequotas", "QuotaUsage", "get"),
			resource("ratelimitpolicies", "LimitUsage", "get"),
			resource("checks", "Check", "create"),
		},
	})
}

func (s *Server) quotaUsage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, ok := s.begin(w, r)
	if !ok {
		return
	}
	defer cancel()
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	top, err := topParam(r)
	if err != nil {
		writeStatus(w, err)
		return
	}
	t, err := targets.Resolve(ctx, s.Reader, ns, v1alpha1.AdjustmentTarget{Kind: v1alpha1.TargetUsageQuota, Name: name})
	if err != nil {
		writeStatus(w, asStatus(err))
		return
	}
	start, end, err := t.Limit.Period.Bounds(s.now(), t.Limit.Location)
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(err))
		return
	}
	u, err := s.Counters.Usage(ctx, t.Limit.Key, start, top)
	if err != nil {
		writeStatus(w, storeError(err))
		return
	}
	writeJSON(w, http.StatusOK, &QuotaUsage{TypeMeta: typeMeta("QuotaUsage"), ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Limit: t.UsageQuota.Spec.Limit, Period: v1alpha1.QuotaPeriod{Start: metav1.NewTime(start), End: metav1.NewTime(end)},
		Usage: *targets.UsageStatus(t.UsageQuota.Spec, u)})
}

// begin bounds the request's store calls and refuses it when the counters
// are out of reach.
func (s *Server) begin(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc, bool) {
	if s.Counters == nil {
		writeStatus(w, apierrors.NewServiceUnavailable("counters are per pod (the operator runs without Redis): no one can read them across pods"))
		return nil, nil, false
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	return ctx, cancel, true
}

func (s *Server) now() time.Time { return clock(s.Now) }

// clock reads now, the injected clock, or the real one when it is unset.
func clock(now func() time.Time) time.Time {
	if now != nil {
		return now()
	}
	return time.Now()
}

func topParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("top")
	if v == "" {
		return defaultTop, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxTop {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("top: %q is not a number from 0 to %d", v, maxTop))
	}
	return n, nil
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{Kind: kind, APIVersion: Group + "/" + Version}
}

// asStatus turns a target's errors into the API's: a missing object is
// NotFound, a missing limit or an invalid object a bad request.
func asStatus(err error) error {
	var missing *targets.MissingError
	var status apierrors.APIStatus
	switch {
	case errors.As(err, &missing):
		return apierrors.NewNotFound(schema.GroupResource{Group: v1alpha1.GroupVersion.Group, Resource: Resource(v1alpha1.TargetKind(missing.Kind))}, missing.Name)
	case errors.As(err, &status):
		return err
	}
	return apierrors.NewBadRequest(err.Error())
}

// Resource is the resource that serves a target kind's usage, named as
// the kind's own resource is.
func Resource(kind v1alpha1.TargetKind) string {
	if kind == v1alpha1.TargetUsageQuota {
		return "usagequotas"
	}
	return "ratelimitpolicies"
}

func storeError(err error) error {
	return apierrors.NewServiceUnavailable("the store cannot be read: " + err.Error())
}

func writeStatus(w http.ResponseWriter, err error) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		status = apierrors.NewInternalError(err)
	}
	st := status.Status()
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	writeJSON(w, int(st.Code), &st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
