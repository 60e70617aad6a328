import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The outcome of a child process run to completion by ``ChildProcess/run(executable:arguments:environment:currentDirectory:standardInput:)``.
public struct ChildProcessResult: Sendable {
    /// The exit status, or the signal number when ``terminatedBySignal`` is `true`.
    public var exitCode: Int32
    /// `true` when the process was killed by a signal rather than exiting.
    public var terminatedBySignal: Bool
    /// Everything the process wrote to standard output.
    public var standardOutput: ByteBuffer
    /// What the process wrote to standard error, truncated to the first
    /// ``ChildProcess/standardErrorLimit`` bytes.
    public var standardError: ByteBuffer

    /// `true` when the process exited with status 0.
    public var succeeded: Bool { !terminatedBySignal && exitCode == 0 }

    /// Standard output decoded as UTF-8 (invalid sequences repaired).
    public var standardOutputString: String { String(buffer: standardOutput) }
    /// Standard error decoded as UTF-8 (invalid sequences repaired).
    public var standardErrorString: String { String(buffer: standardError) }
}

/// Runs a child process with non-blocking, back-pressured pipes.
///
/// Standard input, output and error are serviced concurrently on SwiftNIO event
/// loops (`NIOPipeBootstrap`), so a child that writes a large pack while we are
/// still feeding it input cannot deadlock, and no thread blocks in `read(2)`
/// or `write(2)`. Foundation's `Process` is used only to spawn and reap.
///
/// The child's environment is exactly `environment`: nothing is inherited from
/// the calling process, so unrelated secrets in our own environment never reach it.
public enum ChildProcess {
    /// Standard error beyond this many bytes is discarded (the process still runs).
    public static let standardErrorLimit = 256 * 1024

    /// Runs `executable` to completion and collects its output.
    ///
    /// Cancelling the calling task kills the child (`SIGKILL`) and then rethrows
    /// the resulting I/O error or returns what was collected.
    ///
    /// - Parameters:
    ///   - executable: Absolute path of the program.
    ///   - arguments: Arguments, not including the program name.
    ///   - environment: The complete environment of the child.
    ///   - currentDirectory: Working directory of the child; the caller's when `nil`.
    ///   - standardInput: Bytes written to the child's standard input, which is then
    ///     closed. `nil` gives the child an immediately-closed standard input.
    ///     If the child exits without reading all of it, the rest is dropped silently.
    /// - Returns: Exit status and collected output. A non-zero exit is *not* an error here.
    /// - Throws: ``GitHTTPServerError/launchFailed(executable:reason:)`` when the process
    ///   cannot be spawned; NIO errors if the pipes fail.
    public static func run(
        executable: URL,
        arguments: [String],
        environment: [String: String],
        currentDirectory: URL? = nil,
        standardInput: ByteBuffer? = nil
    ) async throws -> ChildProcessResult {
        var descriptors = DescriptorSet()
        let stdinPipe: (read: CInt, write: CInt)
        let stdoutPipe: (read: CInt, write: CInt)
        let stderrPipe: (read: CInt, write: CInt)
        do {
            stdinPipe = try descriptors.makePipe()
            stdoutPipe = try descriptors.makePipe()
            stderrPipe = try descriptors.makePipe()
        } catch {
            descriptors.closeAll()
            throw GitHTTPServerError.launchFailed(executable: executable.path, reason: "\(error)")
        }

        let exit = ExitWaiter()
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        // `closeOnDealloc: false`: these descriptors are closed exactly once, by
        // `DescriptorSet`, right after the spawn.
        process.standardInput = FileHandle(fileDescriptor: stdinPipe.read, closeOnDealloc: false)
        process.standardOutput = FileHandle(fileDescriptor: stdoutPipe.write, closeOnDealloc: false)
        process.standardError = FileHandle(fileDescriptor: stderrPipe.write, closeOnDealloc: false)
        process.terminationHandler = { finished in
            exit.resolve(.init(status: finished.terminationStatus, bySignal: finished.terminationReason == .uncaughtSignal))
        }
        do {
            try process.run()
        } catch {
            descriptors.closeAll()
            throw GitHTTPServerError.launchFailed(executable: executable.path, reason: "\(error)")
        }
        let pid = process.processIdentifier
        // The child holds its own copies now; keeping ours open would hide EOF.
        descriptors.close(stdinPipe.read)
        descriptors.close(stdoutPipe.write)
        descriptors.close(stderrPipe.write)

        let io: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            io = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .takingOwnershipOfDescriptors(input: stdoutPipe.read, output: stdinPipe.write) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                    }
                }
        } catch {
            descriptors.closeAll()
            await exit.killAndWait(pid)
            throw error
        }
        descriptors.forget(stdoutPipe.read)
        descriptors.forget(stdinPipe.write)

        let errors: NIOAsyncChannel<ByteBuffer, Never>
        do {
            errors = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .takingOwnershipOfDescriptor(input: stderrPipe.read) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, Never>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            descriptors.closeAll()
            try? await io.channel.close()
            await exit.killAndWait(pid)
            throw error
        }
        descriptors.forget(stderrPipe.read)

        return try await withTaskCancellationHandler {
            async let standardError = collect(errors, limit: standardErrorLimit)
            let standardOutput = try await io.executeThenClose { inbound, outbound in
                async let fed: Void = feed(standardInput, to: outbound)
                var collected = ByteBuffer()
                for try await chunk in inbound {
                    collected.writeImmutableBuffer(chunk)
                }
                await fed
                return collected
            }
            let errorOutput = try await standardError
            let termination = await exit.wait()
            return ChildProcessResult(
                exitCode: termination.status,
                terminatedBySignal: termination.bySignal,
                standardOutput: standardOutput,
                standardError: errorOutput
            )
        } onCancel: {
            exit.kill(pid)
        }
    }

    private static func feed(_ input: ByteBuffer?, to outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async {
        if let input, input.readableBytes > 0 {
            do {
                try await outbound.write(input)
            } catch {
                // The child closed its standard input early (EPIPE): it has decided
                // what to answer without the rest, and its output says what happened.
            }
        }
        outbound.finish()
    }

    private static func collect(_ channel: NIOAsyncChannel<ByteBuffer, Never>, limit: Int) async throws -> ByteBuffer {
        try await channel.executeThenClose { inbound in
            var collected = ByteBuffer()
            for try await chunk in inbound {
                // Keep draining past the limit so the child never blocks on a full pipe.
                let room = limit - collected.readableBytes
                if room > 0 {
                    collected.writeImmutableBuffer(chunk.getSlice(at: chunk.readerIndex, length: min(room, chunk.readableBytes))!)
                }
            }
            return collected
        }
    }
}

/// How a child process ended.
struct ProcessTermination: Sendable {
    var status: Int32
    var bySignal: Bool
}

/// One-shot rendezvous between Foundation's termination handler (any thread) and an async waiter.
final class ExitWaiter: Sendable {
    private enum State {
        case running(CheckedContinuation<ProcessTermination, Never>?)
        case exited(ProcessTermination)
    }

    private let state = Mutex<State>(.running(nil))

    func resolve(_ termination: ProcessTermination) {
        let waiter = state.withLock { state -> CheckedContinuation<ProcessTermination, Never>? in
            guard case .running(let continuation) = state else { return nil }
            state = .exited(termination)
            return continuation
        }
        waiter?.resume(returning: termination)
    }

    func wait() async -> ProcessTermination {
        await withCheckedContinuation { continuation in
            let finished = state.withLock { state -> ProcessTermination? in
                switch state {
                case .running:
                    state = .running(continuation)
                    return nil
                case .exited(let termination):
                    return termination
                }
            }
            if let finished { continuation.resume(returning: finished) }
        }
    }

    /// Kills the process and waits until it has been reaped.
    func killAndWait(_ pid: pid_t) async {
        kill(pid)
        _ = await wait()
    }

    /// Sends `SIGKILL` unless the process was already reaped; checking under the
    /// lock keeps us from signalling a recycled pid.
    func kill(_ pid: pid_t) {
        state.withLock { state in
            if case .running = state {
                _ = SystemLibraryShims.kill(pid, SIGKILL)
            }
        }
    }
}

/// Pipe descriptors we still own; closes each exactly once.
private struct DescriptorSet {
    private var open: Set<CInt> = []

    mutating func makePipe() throws -> (read: CInt, write: CInt) {
        var fds: [CInt] = [-1, -1]
        // Close-on-exec so a concurrent spawn elsewhere in the process cannot
        // inherit our pipe ends and hold them open (which would hide EOF). Glibc's
        // module map hides `pipe2`, so this is two steps; the window between them
        // is harmless for Foundation spawns, which close every descriptor >= 3 in
        // the child anyway.
        guard pipe(&fds) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        open.insert(fds[0])
        open.insert(fds[1])
        return (fds[0], fds[1])
    }

    mutating func close(_ fd: CInt) {
        if open.remove(fd) != nil { _ = SystemLibraryShims.close(fd) }
    }

    /// Ownership moved elsewhere (to a NIO channel).
    mutating func forget(_ fd: CInt) {
        open.remove(fd)
    }

    mutating func closeAll() {
        for fd in open { _ = SystemLibraryShims.close(fd) }
        open.removeAll()
    }
}

/// Disambiguates libc functions from same-named members.
private enum SystemLibraryShims {
    #if canImport(Glibc)
    static func kill(_ pid: pid_t, _ signal: CInt) -> CInt { Glibc.kill(pid, signal) }
    static func close(_ fd: CInt) -> CInt { Glibc.close(fd) }
    #elseif canImport(Musl)
    static func kill(_ pid: pid_t, _ signal: CInt) -> CInt { Musl.kill(pid, signal) }
    static func close(_ fd: CInt) -> CInt { Musl.close(fd) }
    #elseif canImport(Darwin)
    static func kill(_ pid: pid_t, _ signal: CInt) -> CInt { Darwin.kill(pid, signal) }
    static func close(_ fd: CInt) -> CInt { Darwin.close(fd) }
    #endif
}
