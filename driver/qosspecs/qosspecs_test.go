package qosspecs_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/driver/qosspecs"
	"github.com/volrep/volrep/errdefs"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		specs map[string]string
		size  int64
		want  array.QoS
	}{
		{nil, 10, array.QoS{}},
		{map[string]string{"total_iops_sec": "500"}, 10, array.QoS{TotalIOPS: 500}},
		{map[string]string{"read_iops_sec": " 100 ", "write_iops_sec": "200", "total_bytes_sec": "1048576",
			"read_bytes_sec": "3", "write_bytes_sec": "4"}, 1,
			array.QoS{ReadIOPS: 100, WriteIOPS: 200, TotalBytesPerSec: 1 << 20, ReadBytesPerSec: 3, WriteBytesPerSec: 4}},
		// Per GB: times the size, recomputed for another size.
		{map[string]string{"total_iops_sec_per_gb": "30", "read_bytes_sec_per_gb": "1000"}, 10,
			array.QoS{TotalIOPS: 300, ReadBytesPerSec: 10000}},
		{map[string]string{"total_iops_sec_per_gb": "30"}, 20, array.QoS{TotalIOPS: 600}},
		{map[string]string{"write_iops_sec_per_gb": "1125899906842624"}, 1 << 40, array.QoS{WriteIOPS: 1 << 50}},
	} {
		got, err := qosspecs.Parse("qos_specs", tc.specs, tc.size)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%v, %d) = %+v, %v; want %+v", tc.specs, tc.size, got, err, tc.want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		specs map[string]string
		field string
	}{
		{map[string]string{"total_iops_sec": "500", "maxIOPS": "5"}, "vt.qos_specs.maxIOPS"},
		{map[string]string{"total_iops_sec_max": "500"}, "vt.qos_specs.total_iops_sec_max"},
		{map[string]string{"read_iops_sec": "fast"}, "vt.qos_specs.read_iops_sec"},
		{map[string]string{"read_iops_sec": "1.5"}, "vt.qos_specs.read_iops_sec"},
		{map[string]string{"write_bytes_sec": "0"}, "vt.qos_specs.write_bytes_sec"},
		{map[string]string{"write_bytes_sec": "-3"}, "vt.qos_specs.write_bytes_sec"},
		{map[string]string{"total_iops_sec": "5", "total_iops_sec_per_gb": "1"}, "vt.qos_specs.total_iops_sec"},
	} {
		_, err := qosspecs.Parse("vt.qos_specs", tc.specs, 1)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Kind != errdefs.KindInvalidArgument || e.Field != tc.field {
			t.Errorf("Parse(%v) = %#v, want INVALID_ARGUMENT on %s", tc.specs, err, tc.field)
		}
	}
	_, err := qosspecs.Parse("q", map[string]string{"iops": "1"}, 1)
	if err == nil || !strings.Contains(err.Error(), "total_iops_sec_per_gb") {
		t.Errorf("an unknown key's error should list the accepted keys: %v", err)
	}
}
