/// Why an archive upload was refused or could not be used.
///
/// ``code`` is stable; the HTTP layer maps ``kind`` to a status (413 for size limits, 422 for
/// bad content, 404 for unknown ids). Messages name the offending entry path but never include
/// file contents.
public struct ArchiveError: CodedError, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// The upload exceeds `PUSHBRIDGE_MAX_ARCHIVE_BYTES` (413).
        case archiveTooLarge = "archive_too_large"
        /// One file exceeds `PUSHBRIDGE_MAX_FILE_BYTES` (413).
        case fileTooLarge = "file_too_large"
        /// More entries than `PUSHBRIDGE_MAX_ARCHIVE_ENTRIES`, or the unpacked total exceeds
        /// `PUSHBRIDGE_MAX_ARCHIVE_EXPANDED_BYTES` (413).
        case tooManyEntries = "too_many_entries"
        /// The unpacked size exceeds `PUSHBRIDGE_MAX_ARCHIVE_EXPANDED_BYTES` (413).
        case expandedTooLarge = "archive_expanded_too_large"
        /// Not a tar or gzip-compressed tar, or damaged/truncated (422).
        case invalidArchive = "invalid_archive"
        /// An entry path is absolute, contains `..`, `.git`, NUL or empty segments (422).
        case invalidPath = "invalid_path"
        /// A symlink points outside the archive root (422).
        case symlinkEscapes = "symlink_escapes_root"
        /// Hard link, device, FIFO or another entry type pushbridge does not unpack (422).
        case unsupportedEntry = "unsupported_entry"
        /// Two entries claim the same path, or an entry lies under a symlink (422).
        case conflictingEntry = "conflicting_entry"
        /// No archive with that id (404).
        case notFound = "archive_not_found"
        /// Local filesystem failure (500).
        case io = "archive_io_error"
    }

    public let kind: Kind
    public let message: String
    /// The entry path at fault, when there is one.
    public let path: String?
    public var code: String { kind.rawValue }

    public init(_ kind: Kind, _ message: String, path: String? = nil) {
        self.kind = kind
        self.message = message
        self.path = path
    }
}
