package config

import (
	"errors"
	"strings"
)

// ParsePointer reads an RFC 6901 JSON pointer into its reference tokens,
// unescaped: "/usage/total_tokens" is [usage total_tokens], "/a~1b/~0c"
// is [a/b ~c]. The whole document ("") is refused: a cost is never the
// whole body.
func ParsePointer(s string) ([]string, error) {
	if s == "" || s[0] != '/' {
		return nil, errors.New(`a JSON pointer starts with "/", such as /usage/total_tokens`)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '~' && (i+1 == len(s) || s[i+1] != '0' && s[i+1] != '1') {
			return nil, errors.New(`"~" in a JSON pointer must be followed by 0 or 1`)
		}
	}
	tokens := strings.Split(s[1:], "/")
	for i, t := range tokens {
		// ~1 first: "~01" is "~1", not "/".
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return tokens, nil
}
