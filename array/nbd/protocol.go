package nbd

// Wire constants of the NBD protocol, named as in the protocol document
// (doc/proto.md of the NetworkBlockDevice project). Every value is sent in
// network byte order.

const (
	nbdMagic          = 0x4e42444d41474943 // "NBDMAGIC"
	ihaveOpt          = 0x49484156454f5054 // "IHAVEOPT"
	optReplyMagic     = 0x0003e889045565a9
	requestMagic      = 0x25609513
	simpleReplyMagic  = 0x67446698
	structReplyMagic  = 0x668e33ef
	zeroPaddingLength = 124 // after NBD_OPT_EXPORT_NAME without NO_ZEROES
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle  = 1 << 0
	flagNoZeroes       = 1 << 1
	flagCFixedNewstyle = 1 << 0
	flagCNoZeroes      = 1 << 1
)

// Transmission flags.
const (
	flagHasFlags        = 1 << 0
	flagReadOnly        = 1 << 1
	flagSendFlush       = 1 << 2
	flagSendFUA         = 1 << 3
	flagRotational      = 1 << 4
	flagSendTrim        = 1 << 5
	flagSendWriteZeroes = 1 << 6
	flagSendDF          = 1 << 7
	flagCanMultiConn    = 1 << 8
	flagSendResize      = 1 << 9
	flagSendCache       = 1 << 10
	flagSendFastZero    = 1 << 11
)

// Options.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optPeekExport      = 4
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10
	optExtendedHeaders = 11
)

// Option reply types.
const (
	repAck          = 1
	repServer       = 2
	repInfo         = 3
	repMetaContext  = 4
	repFlagError    = 1 << 31
	repErrUnsup     = repFlagError + 1
	repErrPolicy    = repFlagError + 2
	repErrInvalid   = repFlagError + 3
	repErrPlatform  = repFlagError + 4
	repErrTLSReqd   = repFlagError + 5
	repErrUnknown   = repFlagError + 6
	repErrShutdown  = repFlagError + 7
	repErrBlockSize = repFlagError + 8
	repErrTooBig    = repFlagError + 9
)

// Information types for NBD_OPT_INFO and NBD_OPT_GO.
const (
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3
)

// Commands.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7
)

// Command flags.
const (
	cmdFlagFUA      = 1 << 0
	cmdFlagNoHole   = 1 << 1
	cmdFlagDF       = 1 << 2
	cmdFlagReqOne   = 1 << 3
	cmdFlagFastZero = 1 << 4
)

// Structured reply flags and types.
const (
	replyFlagDone = 1 << 0

	replyTypeNone        = 0
	replyTypeOffsetData  = 1
	replyTypeOffsetHole  = 2
	replyTypeBlockStatus = 5
	replyTypeError       = 1<<15 + 1
	replyTypeErrorOffset = 1<<15 + 2
)

// Error values carried in replies. They are defined by the protocol and
// happen to match Linux errno values.
const (
	errPerm     = 1
	errIO       = 5
	errNoMem    = 12
	errInval    = 22
	errNoSpc    = 28
	errOverflow = 75
	errNotSup   = 95
	errShutdown = 108
)

// base:allocation state flags.
const (
	stateHole = 1 << 0
	stateZero = 1 << 1
)

// Metadata context names and the ID this server gives base:allocation.
const (
	metaBaseAllocation   = "base:allocation"
	metaBaseNamespace    = "base:"
	metaBaseAllocationID = 1
)

// Sizes of fixed-length messages.
const (
	optHeaderLen         = 16 // IHAVEOPT, option, length
	optReplyHeaderLen    = 20 // magic, option, type, length
	requestHeaderLen     = 28 // magic, flags, type, handle, offset, length
	simpleReplyLen       = 16 // magic, error, handle
	structReplyHeaderLen = 20 // magic, flags, type, handle, length
)
