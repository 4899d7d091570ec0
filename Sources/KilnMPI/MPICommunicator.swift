import CKilnMPI
import Foundation
import Kiln

/// The ranks of an MPI job (Open MPI: `mpirun -np N …`), over MPI_COMM_WORLD. One per process:
/// `MPICommunicator.launched()` initialises MPI when the process was started by an MPI launcher.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int

    /// Whether this build has MPI (libopenmpi-dev was found through pkg-config when it was built).
    public static var isAvailable: Bool { kn_mpi_available() != 0 }

    /// What the launcher told this process: its rank, the job's size and the ranks on this machine.
    public struct Launch: Sendable {
        public let rank: Int
        public let size: Int
        public let localSize: Int
    }

    /// The launch from Open MPI's (or PMIx's / PMI's) environment, or nil when not started by a launcher.
    public static func launch(environment: [String: String] = ProcessInfo.processInfo.environment) -> Launch? {
        func int(_ keys: [String]) -> Int? { keys.lazy.compactMap { environment[$0].flatMap { Int($0) } }.first }
        guard let size = int(["OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"]) else { return nil }
        return Launch(
            rank: int(["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"]) ?? 0, size: size,
            localSize: int(["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]) ?? size)
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var shared: MPICommunicator?

    /// The job's communicator when the process was launched by mpirun (MPI initialised once), nil
    /// otherwise; throws when launched by mpirun but this build has no MPI.
    public static func launched() throws -> MPICommunicator? {
        try lock.withLock {
            if let shared { return shared }
            guard let launch = launch() else { return nil }
            guard isAvailable else {
                throw CommunicatorError.failed(
                    "started as rank \(launch.rank) of \(launch.size) by an MPI launcher, but this build of Kiln has no MPI: install libopenmpi-dev, then rebuild from clean (rm -rf .build; swift build -c release): SwiftPM keeps the compiler flags it found first"
                )
            }
            var rank: Int32 = 0, size: Int32 = 1
            try check(kn_mpi_init(&rank, &size), "MPI_Init_thread")
            shared = MPICommunicator(rank: Int(rank), size: Int(size))
            return shared
        }
    }

    private init(rank: Int, size: Int) { (self.rank, self.size) = (rank, size) }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        try Self.check(kn_mpi_allreduce_sum_float(base, Int64(buffer.count)), "MPI_Allreduce")
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        try Self.check(kn_mpi_allreduce_sum_double(base, Int64(buffer.count)), "MPI_Allreduce")
    }

    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any PendingReduction {
        guard size > 1, let base = buffer.baseAddress else { return Finished() }
        var request: UnsafeMutableRawPointer?
        try Self.check(kn_mpi_iallreduce_sum_float(base, Int64(buffer.count), &request), "MPI_Iallreduce")
        return Request(request!)
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard size > 1, let base = buffer.baseAddress else { return }
        try Self.check(kn_mpi_broadcast(base, Int64(buffer.count), Int32(root)), "MPI_Bcast")
    }

    public func barrier() throws {
        guard size > 1 else { return }
        try Self.check(kn_mpi_barrier(), "MPI_Barrier")
    }

    /// MPI_Abort: every rank of the job ends (mpirun reports it), none is left in a collective.
    public func abort(_ reason: String) {
        FileHandle.standardError.write(Data("rank \(rank) of \(size): \(reason)\n".utf8))
        kn_mpi_abort(1)
    }

    /// MPI_Finalize, after the last collective (at a normal exit).
    public func finalize() { _ = kn_mpi_finalize() }

    static func check(_ status: Int32, _ call: String) throws {
        guard status != 0 else { return }
        var text = [CChar](repeating: 0, count: 512)
        kn_mpi_error_string(status, &text, Int32(text.count))
        let message = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw CommunicatorError.failed("\(call): \(message)")
    }

    private final class Request: PendingReduction {
        private var handle: UnsafeMutableRawPointer?
        init(_ handle: UnsafeMutableRawPointer) { self.handle = handle }
        func poll() throws -> Bool {
            guard let handle else { return true }
            var done: Int32 = 0
            try MPICommunicator.check(kn_mpi_test(handle, &done), "MPI_Test")
            return done != 0
        }
        func wait() throws {
            guard let handle else { return }
            self.handle = nil
            try MPICommunicator.check(kn_mpi_wait(handle), "MPI_Wait")
        }
        deinit { if let handle { _ = kn_mpi_wait(handle) } }
    }

    private final class Finished: PendingReduction {
        func poll() throws -> Bool { true }
        func wait() throws {}
    }
}
