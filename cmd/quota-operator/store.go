package main

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/quotaops/quota-operator/controllers"
)

// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,resourceNames=quota-operator-redis;quota-operator-subject-key,verbs=get

// storePasswordFromSecret returns the password in the Secret
// --store-password-secret, creating the Secret with a random password when
// it does not exist: the default install's Redis takes its password from
// the same Secret, so no password is ever written in Git.
func storePasswordFromSecret(ctx context.Context, c *managerConfig) (string, error) {
	return generatedSecret(ctx, c, "--store-password-secret", c.storePasswordSecret, "password")
}

// generatedSecret returns the value under key of the Secret name in the
// manager's namespace, creating the Secret with a random value when it
// does not exist. Two replicas starting at once both end with the one
// that was created first.
func generatedSecret(ctx context.Context, c *managerConfig, flagName, name, key string) (string, error) {
	cfg, err := restConfig(c.kubeconfig)
	if err != nil {
		return "", err
	}
	k, err := client.New(cfg, client.Options{})
	if err != nil {
		return "", err
	}
	at := client.ObjectKey{Namespace: c.namespace, Name: name}
	for range 2 {
		var s corev1.Secret
		switch err := k.Get(ctx, at, &s); {
		case err == nil && len(s.Data[key]) > 0:
			return string(s.Data[key]), nil
		case err == nil:
			return "", fmt.Errorf(`%s %s: its key %q is empty`, flagName, at, key)
		case !apierrors.IsNotFound(err):
			return "", fmt.Errorf("%s %s: %w", flagName, at, err)
		}
		value, err := controllers.NewPassword()
		if err != nil {
			return "", err
		}
		s = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: at.Namespace, Name: at.Name, Labels: controllers.ManagedLabels()},
			Data: map[string][]byte{key: []byte(value)}}
		if err := k.Create(ctx, &s); err == nil {
			return value, nil
		} else if !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("%s %s: %w", flagName, at, err)
		}
	}
	return "", fmt.Errorf("%s %s: created and gone again", flagName, at)
}
