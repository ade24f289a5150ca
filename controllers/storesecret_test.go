package controllers_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/webhook"
)

func podWith(ns, name string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "img:1"})
	}
	return p
}

// A namespace gets its own store user once a pod there runs the sidecar:
// the Secret holds the user's name and a generated password, which Redis
// accepts, and with which Redis refuses other namespaces' config. Deleting
// the Secret rotates the password, the old one working for the grace
// period only; deleting the last sidecar pod removes the user.
func TestTenantUserFollowsSidecars(t *testing.T) {
	plainNS, sidecarNS, otherNS := namespace(t), namespace(t), namespace(t)
	if err := k8s.Create(ctx, podWith(plainNS, "app", "app")); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, podWith(sidecarNS, "app", "app", webhook.ContainerName)); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: sidecarNS, Name: storeSecret}
	first := expectWorkingSecret(t, key, "")
	refused := asUser(first).HGetAll(ctx, "qo:v1:config:{"+otherNS+"}:docs").Err()
	if refused == nil || !strings.HasPrefix(refused.Error(), "NOPERM") {
		t.Fatalf("%s reading %s's config: %v; want NOPERM", first.user, otherNS, refused)
	}
	err := k8s.Get(ctx, client.ObjectKey{Namespace: plainNS, Name: storeSecret}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("a namespace without sidecars got the Secret: %v", err)
	}

	if err := k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: sidecarNS, Name: storeSecret}}); err != nil {
		t.Fatal(err)
	}
	second := expectWorkingSecret(t, key, first.password)
	if err := asUser(first).Ping(ctx).Err(); err != nil {
		t.Fatalf("the old password during the grace period: %v", err)
	}
	expectRefused(t, first, "the old password after the grace period", 3*rotationGrace)

	if err := k8s.Delete(ctx, podWith(sidecarNS, "app")); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, second, "the user after its last sidecar pod was deleted", 10*time.Second)
}

type credentials struct{ user, password string }

func asUser(c credentials) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: redisS.Addr, Username: c.user, Password: c.password, Protocol: 2, MaxRetries: -1})
}

// expectWorkingSecret waits for the Secret at key to name the namespace's
// user with a password other than old, which Redis accepts.
func expectWorkingSecret(t *testing.T, key client.ObjectKey, old string) credentials {
	t.Helper()
	return expectUserSecret(t, key, limiter.TenantUserName(key.Namespace), old, func(r *store.Redis) error {
		return r.Set(ctx, limiter.AppKey(key.Namespace, "k"), []byte("v"), time.Minute)
	})
}

// expectUserSecret waits for the Secret at key to name user with a
// password other than old, and the shared files, as which probe works.
func expectUserSecret(t *testing.T, key client.ObjectKey, user, old string, probe func(*store.Redis) error) credentials {
	t.Helper()
	var c credentials
	eventually(t, 10*time.Second, "a Secret whose user Redis accepts", func() error {
		var s corev1.Secret
		if err := k8s.Get(ctx, key, &s); err != nil {
			return err
		}
		c = credentials{string(s.Data["username"]), string(s.Data["password"])}
		if c.user != user || len(c.password) != 64 || c.password == old || string(s.Data["ca.crt"]) != sharedCA {
			return fmt.Errorf("user %q, a password of %d bytes (the old one: %v), ca.crt %q", c.user, len(c.password), c.password == old, s.Data["ca.crt"])
		}
		r := store.NewRedis(asUser(c))
		defer func() { _ = r.Close() }()
		return probe(r)
	})
	return c
}

// expectRefused waits until Redis refuses c's login.
func expectRefused(t *testing.T, c credentials, what string, within time.Duration) {
	t.Helper()
	eventually(t, within, what, func() error {
		r := asUser(c)
		defer func() { _ = r.Close() }()
		err := r.Ping(ctx).Err()
		if err != nil && strings.HasPrefix(err.Error(), "WRONGPASS") {
			return nil
		}
		if err == nil {
			return errors.New("logged in")
		}
		return fmt.Errorf("ping: %w", err)
	})
}

// A restarted Redis has lost every ACL user; the manager writes them back
// within a store check.
func TestTenantUserBackAfterRestart(t *testing.T) {
	ns := namespace(t)
	if err := k8s.Create(ctx, podWith(ns, "app", "app", webhook.ContainerName)); err != nil {
		t.Fatal(err)
	}
	c := expectWorkingSecret(t, client.ObjectKey{Namespace: ns, Name: storeSecret}, "")
	if err := redisS.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := redisS.Start(); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 10*time.Second, "the user back after a restart", func() error {
		r := asUser(c)
		defer func() { _ = r.Close() }()
		return r.Ping(ctx).Err()
	})
	t.Logf("user back %v after the restart", took.Round(time.Millisecond))
}

// The gateway rate-limit service gets a user of its own, not the admin's:
// its Secret, in the manager's namespace, names it; Redis lets it reach
// the namespaces it serves (counters, app keys, config) and refuses it
// every other namespace.
func TestGatewayUserReachesItsNamespacesOnly(t *testing.T) {
	// Redis has the user once it accepts it (the Secret is written first).
	c := expectUserSecret(t, gatewaySecret, limiter.GatewayUserName, "", func(r *store.Redis) error { return r.Client().Ping(ctx).Err() })
	gw := asUser(c)
	defer func() { _ = gw.Close() }()
	r := store.NewRedis(gw)
	for _, ns := range gatewayServes {
		if err := r.Set(ctx, limiter.AppKey(ns, "k"), []byte("v"), time.Minute); err != nil {
			t.Fatalf("the gateway's user on %s, which it serves: %v", ns, err)
		}
		if err := gw.HGetAll(ctx, "qo:v1:config:{"+ns+"}:docs").Err(); err != nil {
			t.Fatalf("the gateway's user reading %s's config: %v", ns, err)
		}
	}
	other := namespace(t)
	for what, err := range map[string]error{
		"an app key":   r.Set(ctx, limiter.AppKey(other, "k"), []byte("v"), time.Minute),
		"its config":   gw.HGetAll(ctx, "qo:v1:config:{"+other+"}:docs").Err(),
		"a counter":    r.Client().Do(ctx, "fcall", "qo1_incr", "1", limiter.CounterKey{Namespace: other, Policy: "p", Limit: "l"}.Key("0"), "1", "1000").Err(),
		"the admin's":  gw.Get(ctx, "qo:seal").Err(),
		"every tenant": gw.FlushAll(ctx).Err(),
	} {
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("the gateway's user on %s of %s, which it does not serve: %v; want NOPERM", what, other, err)
		}
	}
}
