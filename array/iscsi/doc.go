// Package iscsi is an iSCSI target (RFC 7143) with an SBC-3/SPC-4 block
// command set, written from the RFC and the T10 drafts. The array serves
// its volumes through it to Linux (open-iscsi), qemu/libiscsi, VMware and
// Windows initiators.
//
// # Shape
//
//	srv := iscsi.NewServer(targets, iscsi.Options{Logger: log})
//	go srv.Serve(ctx, listener) // one portal; call again for more portals
//	...
//	srv.Close() // closes listeners, shuts connections down, waits
//
// Targets is where the array authorises initiators: which targets an
// initiator discovers, the CHAP credentials of a login, the LUN map and
// the Device behind each LUN. The server asks it at every login, every
// SendTargets, every REPORT LUNS and whenever a session first uses a
// LUN, so a changed map or secret applies to open sessions. A Device is
// the volume behind a LUN (see its documentation for the concurrency and
// durability contract). Stats returns the server's counters.
//
// # Protocol coverage
//
// PDUs: 48-byte BHS, AHS (an Extended CDB AHS is honoured, others
// ignored), padding, CRC32C header and data digests when negotiated. A
// data segment over the negotiated MaxRecvDataSegmentLength, a digest
// mismatch, a Data-Out out of sequence (offset, DataSN, TTT, burst
// length) and a non-login PDU during login close the connection (there
// is no recovery at ErrorRecoveryLevel 0); each is logged as a protocol
// violation and counted in Stats.ProtocolErrors.
//
// Login: SecurityNegotiation with AuthMethod=CHAP,None and CHAP_A=5 (MD5),
// one-way or mutual (the initiator's CHAP_I/CHAP_C answered with
// Auth.MutualUser/MutualSecret; a challenge equal to the target's is
// refused); LoginOperationalNegotiation of HeaderDigest, DataDigest
// (CRC32C, None), MaxRecvDataSegmentLength (declared both ways),
// MaxBurstLength, FirstBurstLength, ImmediateData, InitialR2T (either
// value: unsolicited Data-Out is supported), MaxConnections=1,
// DataPDUInOrder=DataSequenceInOrder=Yes, DefaultTime2Wait,
// DefaultTime2Retain=0, MaxOutstandingR2T=1, ErrorRecoveryLevel=0,
// IFMarker/OFMarker=No, iSCSIProtocolLevel, TaskReporting; the target
// sends TargetPortalGroupTag (and TargetAlias if set). Unknown keys get
// NotUnderstood. Sessions are Normal or Discovery; the TSIH is assigned
// at the transition to the full feature phase. Login statuses: 02/01 for a
// wrong user or secret, an initiator Targets does not know
// (ErrUnknownInitiator) and a skipped or broken CHAP; 02/03 for
// ErrUnknownTarget; 02/07 for a missing InitiatorName or TargetName; 02/00
// for a bad stage transition or malformed text; 02/05 for a version other
// than 0; 02/0A for a login naming an existing TSIH (one connection per
// session); 03/00 when Targets fails otherwise. Refusals are logged at
// warn with the remote address, initiator, target and reason, never a
// secret.
//
// Full feature phase: SCSI Command/Response with autosense, Data-In (the
// status rides in the last Data-In when there is no sense), R2T and
// Data-Out honouring FirstBurstLength, ImmediateData, InitialR2T and
// MaxBurstLength, residual overflow/underflow (a WRITE whose expected
// length is short of its CDB's writes only the data sent), NOP-Out/NOP-In
// (pings answered; the target sends no pings of its own), Text with
// SendTargets (All, a name, or the session's target in a normal session),
// listing only what Targets.Discover returns (a Target without portals is
// listed at the connection's local address), Task Management (ABORT TASK,
// ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, TARGET WARM RESET,
// which is a LOGICAL UNIT RESET of every LUN the initiator sees through
// the target: function complete, a task already running finishes and is
// answered first, so ABORT TASK then answers "task does not exist";
// CLEAR ACA and TARGET COLD RESET: not supported; TASK REASSIGN:
// reassignment not supported), Logout (session or connection; the running commands are
// answered first; connection recovery is refused), and Reject for
// unknown opcodes (reason 05h), SNACK and SCSI commands in a discovery
// session (04h), a reused ITT (07h).
//
// Command window: one session may have Options.QueueDepth commands
// outstanding; MaxCmdSN = ExpCmdSN + free slots - 1, so the window closes
// as commands queue and opens as their responses are sent. A command
// outside the window is ignored (RFC 7143 4.2.2.1), so a client that sends
// thousands of commands without reading responses makes the server hold
// no more than the window: its responses back up on TCP, the writer and
// the command goroutines block, and the reader discards what lies past
// MaxCmdSN. Commands of a session run concurrently (one goroutine per
// admitted command) and are answered in any order. READ data is charged to
// a per-session byte budget (Options.MaxInflightBytes).
//
// # SCSI
//
// 512-byte logical blocks, 4096-byte physical blocks (READ CAPACITY(16)
// exponent 3), thin provisioned (LBPME, LBPRZ). INQUIRY (standard, SPC-4,
// CMDQUE, version descriptors SAM-5/iSCSI/SPC-4/SBC-3; TPGS 01b, implicit
// ALUA) and VPD pages 00h, 80h (Identity.Serial), 83h (NAA 6 from
// Identity.NAA, relative target port and target port group, both
// Options.PortGroup, target port SCSI name), B0h (block
// limits: 8 MiB transfers, UNMAP up to 1Mi blocks and 256 descriptors,
// WRITE SAME up to 8 MiB with WSNZ, COMPARE AND WRITE up to 128 blocks),
// B1h (non-rotating), B2h (LBPU, LBPWS, LBPWS10, LBPRZ, thin); READ
// CAPACITY(10/16); READ and WRITE (6/10/12/16; FUA reaches
// Device.WriteAt); WRITE AND VERIFY (10/12/16, written with FUA); VERIFY
// (10/12/16; BYTCHK 0, 1 and 3, a mismatch is MISCOMPARE with the offset in
// INFORMATION); SYNCHRONIZE CACHE(10/16) → Device.Flush; UNMAP →
// Device.Zero; WRITE SAME(10/16) (UNMAP bit, NDOB or zero data →
// Device.Zero, other data written in 1 MiB chunks); COMPARE AND WRITE
// (through Device.CompareAndWrite when the device has one, atomic against
// every writer of the volume, a pod's other array included; else atomic
// against every other write through this server to the same volume:
// writes hold a per-volume lock shared, COMPARE AND WRITE holds it
// exclusively; the lock is keyed by Identity.NAA); GET LBA STATUS (the
// device is read: zero ranges are reported deallocated, which LBPRZ
// makes equivalent; at most 8 MiB per call); PRE-FETCH(10/16) (GOOD);
// TEST UNIT READY; START STOP UNIT (no effect); REPORT LUNS (from
// Targets.LUNs each time; LUNs the map no longer has are closed); MODE
// SENSE(6/10) (caching page with WCE=1, control page, all pages, DBD, WP
// in the header for a read-only LUN; saved values: SAVING PARAMETERS NOT
// SUPPORTED); REQUEST SENSE (fixed or descriptor; autosense leaves
// nothing pending); REPORT SUPPORTED OPERATION CODES (all, and one command
// with or without service action, with RCTD); REPORT TARGET PORT GROUPS
// (length-only and extended headers; this server's group with one port,
// the state and PREF bit from AccessReporter, status "implicit").
//
// ALUA: a Device that implements AccessReporter is asked its state on
// every command. A change is a unit attention, ASYMMETRIC ACCESS STATE
// CHANGED (2Ah/06h), reported once to each session (REPORT TARGET PORT
// GROUPS is answered and leaves it pending). Standby allows MODE SENSE
// and MAINTENANCE IN; unavailable and transitioning allow MAINTENANCE IN;
// INQUIRY, REPORT LUNS and REQUEST SENSE are always answered. Other
// commands get NOT READY with 04h/0Bh (standby), 04h/0Ch (unavailable) or
// 04h/0Ah (transitioning) without reaching the device.
//
// Persistent reservations (reservation.go): PERSISTENT RESERVE IN (READ
// KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS) and OUT
// (every service action but REGISTER AND MOVE), LU scope, all six types,
// per I_T nexus (initiator name and ISID). The state is the unit's,
// checked on every command without a lock, and kept through a restart by
// Options.Keeper (PTPL_C=1; without a Keeper, in memory only and APTPL
// refused; SPEC_I_PT and ALL_TG_PT are refused). PREEMPT AND ABORT waits for the
// preempted nexuses' running commands before it answers. A unit another target
// serves too has one state at both (ReservationSharer: one target decides,
// the other forwards, and each state goes to the other before the answer;
// reservation_server.go); one that cannot share them (ReservationRefuser) has none,
// as a reservation here would not fence the other target's paths. The
// array's operator reads a unit's state and clears it
// (reservation_operator.go), through the deciding target like a host's.
//
// Not supported (INVALID COMMAND OPERATION CODE): MODE SELECT,
// RESERVE(6)/RELEASE(6), ORWRITE, WRITE ATOMIC, EXTENDED COPY,
// SANITIZE, READ DEFECT DATA, PREVENT ALLOW MEDIUM REMOVAL; protection
// information (RDPROTECT/WRPROTECT/VRPROTECT other than 0 → INVALID FIELD
// IN CDB); SET TARGET PORT GROUPS (explicit ALUA); multi-PDU text
// requests; several connections per session; error recovery levels 1–2.
//
// # Error mapping
//
// Unsupported opcode: ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE
// (20h/00h). Bad CDB field: INVALID FIELD IN CDB (24h/00h). LBA range past
// the capacity: LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h). Malformed
// UNMAP list: PARAMETER LIST LENGTH ERROR (1Ah/00h) or INVALID FIELD IN
// PARAMETER LIST (26h/00h). Data-Out length other than the command needs
// (VERIFY, WRITE SAME, UNMAP, COMPARE AND WRITE): INVALID FIELD IN
// INFORMATION UNIT (0Eh/03h). A LUN not in the map, or ErrNotMapped from
// Targets.Open or any Device method: LOGICAL UNIT NOT SUPPORTED (25h/00h)
// (INQUIRY answers peripheral qualifier 011b). A read-only LUN
// (Device.ReadOnly) or ErrWriteProtected: DATA PROTECT / WRITE PROTECTED
// (27h/00h) without calling the device. ErrNoSpace: DATA PROTECT / SPACE
// ALLOCATION FAILED WRITE PROTECT (27h/07h). ErrUnavailable: NOT READY /
// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE (04h/0Ch).
// Another error: MEDIUM ERROR / UNRECOVERED READ ERROR (11h/00h) for
// reads, HARDWARE ERROR / INTERNAL TARGET FAILURE (44h/00h) otherwise
// (logged at warn). A connection closing under a command: ABORTED COMMAND
// (2Fh/00h). Unit attentions, each once per session and LUN and never on
// INQUIRY, REPORT LUNS or REQUEST SENSE: CAPACITY DATA HAS CHANGED
// (2Ah/09h) when Device.Size changes, POWER ON, RESET, OR BUS DEVICE
// RESET OCCURRED (29h/00h) after a LOGICAL UNIT RESET of the volume from
// any session, or at the other target of a shared logical unit
// (ResetSharer, Server.SharedReset), and for every command that arrived
// before such a reset but had not begun (a write awaiting its Data-Out),
// which is not run; RESERVATIONS PREEMPTED, RESERVATIONS RELEASED and
// REGISTRATIONS PREEMPTED (2Ah/03h, 04h, 05h) to the I_T nexus a
// persistent reservation change affected. A command its nexus's
// reservation does not allow: RESERVATION CONFLICT (status 18h), without
// reaching the device. No error ends a session; only protocol violations
// close a connection.
package iscsi
