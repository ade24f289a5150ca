package gateway_test

import (
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// Every Redis this package's tests start gets the functions library, as
// the manager would load it.
func init() { redistest.Library = limiter.Library }
