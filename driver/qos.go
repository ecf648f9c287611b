package driver

import (
	"context"

	"github.com/volrep/volrep/array"
	"github.com/volrep/volrep/driver/qosspecs"
)

// The request fields a volume type's QoS specs come in, for errors.
const (
	qosField       = "volume_type.qos_specs"
	retypeQoSField = "new_type.qos_specs"
)

// applyQoS sets the limit vt's QoS specs ask for on volume name of array
// a, for the size the volume has there (so per-GB limits follow an
// extend, and a clone whose size came from its snapshot). Specs that ask
// for nothing remove any limit. The array enforces it on every attachment
// of the volume. The array passes it on to the volume's copies: a pod's
// peer takes it at once (hosts reach a pod volume through both arrays),
// and an async replica target with the next cycle, so a failover finds
// it in place.
func (b *Backend) applyQoS(ctx context.Context, a array.Array, name, field string, vt VolumeType) error {
	v, err := a.GetVolume(ctx, name)
	if err != nil {
		return err
	}
	q, err := qosspecs.Parse(field, vt.QoSSpecs, v.SizeBytes/gib)
	if err != nil {
		return err
	}
	if q == v.QoS {
		return nil
	}
	_, err = a.SetVolumeQoS(ctx, name, q)
	return err
}
