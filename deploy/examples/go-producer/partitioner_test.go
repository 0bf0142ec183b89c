package main

import "testing"

// The vectors of Kafka's own UtilsTest.testMurmur2 (Java client).
func TestMurmur2MatchesTheJavaClient(t *testing.T) {
	cases := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	}
	for key, want := range cases {
		if got := murmur2([]byte(key)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestJavaPartitionClearsTheSignBit(t *testing.T) {
	// murmur2("21") is negative: toPositive(-973932308) = 1173551340, % 6 = 0.
	if got := JavaPartition([]byte("21"), 6); got != 1173551340%6 {
		t.Errorf("JavaPartition(21, 6) = %d", got)
	}
	for _, key := range []string{"21", "foobar", "abc", "DP310000-2026-000123", "SHDEX"} {
		if p := JavaPartition([]byte(key), 7); p < 0 || p >= 7 {
			t.Errorf("JavaPartition(%q, 7) = %d out of range", key, p)
		}
	}
}

func TestContractKeys(t *testing.T) {
	cases := map[string]string{
		`{"type":"trade","product_id":"P-1","exchange_id":"SHDEX"}`:     "P-1",
		`{"type":"heartbeat","product_id":"P-1","exchange_id":"SHDEX"}`: "SHDEX",
		`{"type":"usage","product_id":"数据-1"}`:                          "数据-1",
	}
	for line, want := range cases {
		if got := contractKey([]byte(line)); string(got) != want {
			t.Errorf("contractKey(%s) = %q, want %q", line, got, want)
		}
	}
	for _, line := range []string{`{garbage`, `["trade"]`, `{"type":"trade","product_id":42}`, `{"type":"alert"}`, ``} {
		if got := contractKey([]byte(line)); got != nil {
			t.Errorf("contractKey(%s) = %q, want no key", line, got)
		}
	}
}
