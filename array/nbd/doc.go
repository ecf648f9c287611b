// Package nbd is an NBD (Network Block Device) server, written from the
// protocol document (doc/proto.md of the NetworkBlockDevice project). The
// array serves its volumes through it; clients such as qemu, nbdcopy,
// nbdinfo, fio and the Linux kernel attach to them.
//
// # Shape
//
//	srv := nbd.NewServer(exports, nbd.Options{Logger: log})
//	go srv.Serve(ctx, listener) // returns when ctx is done or the listener closes
//	...
//	srv.Close() // closes listeners, shuts connections down, waits
//
// Exports maps export names to Devices, and is where a caller authorises a
// client: Open gets the name and the client's address and may refuse. A
// Device is the byte range behind an export (see its documentation for the
// concurrency and durability contract, in particular that Flush must cover
// writes acknowledged on every connection to the same volume).
// Stats returns the server's counters.
//
// # Protocol coverage
//
// Handshake: fixed newstyle only (NBDMAGIC, IHAVEOPT, server flags
// NBD_FLAG_FIXED_NEWSTYLE|NBD_FLAG_NO_ZEROES). Client flags other than
// NBD_FLAG_C_FIXED_NEWSTYLE and NBD_FLAG_C_NO_ZEROES drop the connection; a
// client that does not set NBD_FLAG_C_FIXED_NEWSTYLE may only send
// NBD_OPT_EXPORT_NAME. No TLS (NBD_OPT_STARTTLS gets NBD_REP_ERR_UNSUP), no
// extended headers.
//
// Options:
//   - NBD_OPT_GO, NBD_OPT_INFO: NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE
//     (minimum 1, preferred 4096, maximum 32 MiB) always; NBD_INFO_NAME and
//     NBD_INFO_DESCRIPTION (if the Device is a Describer) on request. A name
//     Exports.Open refuses gets NBD_REP_ERR_UNKNOWN and is logged at warn
//     level with the remote address and the export name (see
//     Options.LogName to redact secrets).
//   - NBD_OPT_EXPORT_NAME: the old way in; a refused name drops the
//     connection, as the protocol requires.
//   - NBD_OPT_LIST: the names Exports.List returns.
//   - NBD_OPT_ABORT, NBD_OPT_STRUCTURED_REPLY.
//   - NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT: the only context
//     is base:allocation ("base:" lists it).
//   - anything else: NBD_REP_ERR_UNSUP.
//
// Transmission flags: HAS_FLAGS, SEND_FLUSH, SEND_FUA, CAN_MULTI_CONN,
// SEND_CACHE, SEND_DF (with structured replies), and either READ_ONLY or
// SEND_TRIM|SEND_WRITE_ZEROES|SEND_FAST_ZERO.
//
// Commands: READ, WRITE, FLUSH, TRIM, WRITE_ZEROES (NO_HOLE, FAST_ZERO), DISC,
// BLOCK_STATUS (base:allocation: holes are HOLE|ZERO, REQ_ONE honoured),
// CACHE (accepted, no effect). FUA on WRITE, TRIM and WRITE_ZEROES is passed
// to the Device. With structured replies a READ is answered by one
// NBD_REPLY_TYPE_OFFSET_DATA chunk, errors by NBD_REPLY_TYPE_ERROR with a
// message; without them, simple replies. Errors: EPERM for writes to a
// read-only export, EINVAL for bad flags, out-of-range reads, trims and
// block status and requests over 32 MiB, ENOSPC for writes past the end,
// ENOTSUP for FAST_ZERO a FastZeroer declines, ESHUTDOWN when the server
// stops, EIO (or the mapped errno) for device errors. An error reply leaves
// the connection usable.
//
// # Concurrency and performance
//
// Each connection has a reader goroutine and up to Options.Workers
// workers, started as requests need them (an idle connection costs one
// goroutine). Requests are served out of order and concurrently. A Device that is a
// QuickDevice serves READs and WRITEs (without FUA) that need no waiting,
// such as page-cache hits, on the reader itself, which saves a goroutine
// wake-up per request; everything else, and anything the device says would
// wait, goes to a worker. Replies are serialised by whichever goroutine
// finds nobody writing: it sends everything queued, batched into one writev
// (a READ's header and data go out without copying). While the next
// request is already buffered in full, the reader holds the small replies
// of the requests it served and sends them together, before it could wait
// for the client. WRITE payloads are read straight into pooled buffers
// (after a large one, the next header is read alone, so that a stream of
// large writes is not copied through the read buffer), and buffers and
// request structs are recycled, so the steady state allocates nothing per
// request. A per-connection budget (Options.MaxInflightBytes) bounds
// payload memory, and Options.MaxQueuedRequests the requests read but not
// yet answered: at either limit the connection reads nothing more until the
// client takes replies, so a client that pipelines requests without reading
// the answers cannot grow the server's memory. TCP_NODELAY is set. All
// goroutines of a connection end when the client disconnects, when the
// Serve context is done or on Close.
//
// # Limits
//
// Options.MaxConnections (default 1024) caps the connections served at
// once; a client over it is refused cleanly, with NBD_REP_ERR_POLICY and a
// message in answer to its first option. Options.IdleTimeout (off by
// default) closes a connection with no request in flight for that long, or
// whose client has taken no reply for that long. Negotiation is bounded by
// Options.HandshakeTimeout; an oversized option is answered
// NBD_REP_ERR_TOO_BIG at once.
package nbd
