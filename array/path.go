package array

// PathState is how hosts should use one array's paths to a volume: the
// ALUA asymmetric access state its SCSI target reports (SPC-4 5.15), so a
// host's multipath sends I/O to the array that serves the volume best and
// fails over when that array stops.
type PathState uint8

const (
	// PathOptimized: every command; the paths to prefer.
	PathOptimized PathState = iota
	// PathNonOptimized: every command, at a cost (writes forwarded to the
	// other array of a pod).
	PathNonOptimized
	// PathStandby: no media access until the state changes.
	PathStandby
	// PathUnavailable: no media access (a pod its mediator stopped).
	PathUnavailable
	// PathTransitioning: no media access now; retry.
	PathTransitioning
)

func (s PathState) String() string {
	switch s {
	case PathOptimized:
		return "active/optimized"
	case PathNonOptimized:
		return "active/non-optimized"
	case PathStandby:
		return "standby"
	case PathUnavailable:
		return "unavailable"
	case PathTransitioning:
		return "transitioning"
	}
	return "unknown"
}

// Path is what an array reports of its paths to a volume.
type Path struct {
	State PathState
	// Preferred: this array is the host's preferred one for the volume
	// (its pod's volrep_preferred_array).
	Preferred bool
	// Alone: no other array's copy takes I/O now (the pod is not in sync,
	// or this array carries it by itself), so a host's preferred arrays
	// must not make this, its only working path, non-optimized.
	Alone bool
}
