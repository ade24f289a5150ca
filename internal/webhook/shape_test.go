package webhook

import "testing"

func TestSupportsNativeSidecars(t *testing.T) {
	tests := []struct {
		version string
		want    bool
		wantErr bool
	}{
		{"v1.28.9", false, false},
		{"v1.29.0", true, false},
		{"v1.37.2", true, false},
		{"v1.30.4-gke.1348000", true, false},
		{"v1.27.16+k3s1", false, false},
		{"not a version", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			got, err := supportsNativeSidecars(tt.version)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("%v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
