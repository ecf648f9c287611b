package array

// ReservationType is a SCSI-3 persistent reservation type, by its SPC-4
// code (table 176); 0 is no reservation.
type ReservationType uint8

const (
	ReservationNone                    ReservationType = 0
	ReservationWriteExclusive          ReservationType = 1
	ReservationExclusiveAccess         ReservationType = 3
	ReservationWriteExclusiveRegsOnly  ReservationType = 5
	ReservationExclusiveAccessRegsOnly ReservationType = 6
	ReservationWriteExclusiveAllRegs   ReservationType = 7
	ReservationExclusiveAccessAllRegs  ReservationType = 8
)

var reservationTypeNames = map[ReservationType]string{
	ReservationNone:                    "none",
	ReservationWriteExclusive:          "write-exclusive",
	ReservationExclusiveAccess:         "exclusive-access",
	ReservationWriteExclusiveRegsOnly:  "write-exclusive-registrants-only",
	ReservationExclusiveAccessRegsOnly: "exclusive-access-registrants-only",
	ReservationWriteExclusiveAllRegs:   "write-exclusive-all-registrants",
	ReservationExclusiveAccessAllRegs:  "exclusive-access-all-registrants",
}

// String is the type as sg_persist names it.
func (t ReservationType) String() string {
	if s, ok := reservationTypeNames[t]; ok {
		return s
	}
	return "unknown"
}

// Reservations are the SCSI-3 persistent reservations of a volume's
// logical unit, which the hosts of a cluster keep through the array's
// iSCSI target (PERSISTENT RESERVE OUT) to fence each other. A pod's
// volume has one set at both of its arrays.
type Reservations struct {
	// Generation counts the changes of registrations (SPC-4 PRgeneration).
	Generation uint32
	Type       ReservationType
	// Registrations in the order they registered.
	Registrations []Registration
	// APTPL is the APTPL bit of the last REGISTER. The array keeps every
	// registration through its own restart either way.
	APTPL bool
}

// Registration is one I_T nexus's reservation key.
type Registration struct {
	// InitiatorPort is the iSCSI initiator port: the initiator's name and
	// the session's ISID ("iqn…,i,0x…"), so two paths of one host are two.
	InitiatorPort string
	// Target and RelativeTargetPort name the target port: the array's
	// target and its port group (each array of a pod has its own).
	Target             string
	RelativeTargetPort uint16
	Key                uint64
	// Holder: the nexus holds the reservation.
	Holder bool
}
