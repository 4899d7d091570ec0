/// The ranks of one data-parallel job and the collectives training needs (MPI's vocabulary).
/// Every rank calls the same collectives in the same order; a rank that fails calls `abort`, so
/// no other rank waits forever on a collective it will never join.
///
/// * `SingleProcessCommunicator`: the group of one (collectives are no-ops).
/// * `LocalCommunicatorGroup`: ranks as threads of one process (tests, no MPI needed).
/// * `MPICommunicator` (the KilnMPI product): processes on one or many machines, over Open MPI.
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Sums `buffer` element-wise over the ranks, in place; every rank receives the same values.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws
    /// Starts a sum that proceeds while the caller computes (MPI_Iallreduce); `buffer` must stay
    /// untouched until the returned reduction completes.
    func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any PendingReduction
    /// Copies rank `root`'s bytes into every other rank's buffer (same length everywhere).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    func barrier() throws
    /// Ends the whole group after this rank failed: MPI aborts every process; a local group wakes
    /// its waiting ranks with `CommunicatorError.aborted`.
    func abort(_ reason: String)
}

/// A collective in flight.
public protocol PendingReduction: AnyObject {
    /// Lets the reduction progress; true once it has completed.
    func poll() throws -> Bool
    func wait() throws
}

public enum CommunicatorError: Error, CustomStringConvertible {
    /// Another rank gave up; this one stops instead of waiting.
    case aborted(rank: Int, reason: String)
    /// The transport itself failed.
    case failed(String)

    public var description: String {
        switch self {
        case let .aborted(rank, reason): "rank \(rank) of the job failed: \(reason)"
        case let .failed(what): "communication failed: \(what)"
        }
    }
}

/// A reduction that finished when it was started (transports without non-blocking collectives).
final class CompletedReduction: PendingReduction {
    func poll() throws -> Bool { true }
    func wait() throws {}
}

extension Communicator {
    /// Blocking by default; transports with non-blocking collectives override it.
    public func startAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws -> any PendingReduction {
        try allReduceSum(buffer)
        return CompletedReduction()
    }

    public func allReduceSum(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    }

    public func allReduceSum(_ values: inout [Float]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    }

    /// Rank `root`'s contents of `tensors` on every rank, in one broadcast.
    public func broadcast(_ tensors: [Tensor], root: Int = 0) throws {
        guard size > 1, !tensors.isEmpty else { return }
        let bytes = tensors.reduce(0) { $0 + $1.byteCount }
        let packed = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes, 1), alignment: 16)
        defer { packed.deallocate() }
        var offset = 0
        for tensor in tensors where rank == root {
            (packed.baseAddress! + offset).copyMemory(from: tensor.data, byteCount: tensor.byteCount)
            offset += tensor.byteCount
        }
        try broadcast(UnsafeMutableRawBufferPointer(rebasing: packed[0..<bytes]), root: root)
        offset = 0
        for tensor in tensors {
            if rank != root { tensor.data.copyMemory(from: packed.baseAddress! + offset, byteCount: tensor.byteCount) }
            offset += tensor.byteCount
        }
    }
}

/// The group of one process: every collective leaves the data as it is.
public final class SingleProcessCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func barrier() throws {}
    public func abort(_ reason: String) {}
}
