// `ByteBuffer` appears throughout this module's public API (request bodies,
// process output); re-export it so clients need not depend on NIOCore themselves.
@_exported import struct NIOCore.ByteBuffer
