package store

import (
	"math"
	"strconv"
)

// parseInteger accepts exactly what Redis INCRBY accepts: the canonical
// base-10 form of an int64, with no sign other than a leading '-', no leading
// zeros and no spaces. The value itself is kept out of the error: it may be a
// token somebody stored.
func parseInteger(b []byte) (int64, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != string(b) {
		return 0, ErrNotInteger
	}
	return n, nil
}

func addInt64(a, b int64) (int64, error) {
	if (b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b) {
		return 0, ErrOverflow
	}
	return a + b, nil
}
