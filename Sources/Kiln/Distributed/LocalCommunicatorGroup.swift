import Foundation

/// `size` ranks as threads of one process: each thread takes `communicator(rank:)` and runs its
/// own training step. Sums are taken in rank order, so every rank gets bit-equal results. Used by
/// the tests and wherever several ranks must run without MPI.
public final class LocalCommunicatorGroup: @unchecked Sendable {
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var failure: (rank: Int, reason: String)?
    /// Each rank's buffer of the collective in progress (written by its rank before a barrier,
    /// read by the others after it).
    private let contributions: UnsafeMutablePointer<UnsafeMutableRawPointer?>

    public init(size: Int) {
        precondition(size >= 1, "a group needs at least one rank")
        self.size = size
        contributions = .allocate(capacity: size)
        contributions.initialize(repeating: nil, count: size)
    }

    deinit { contributions.deallocate() }

    public func communicator(rank: Int) -> Communicator {
        precondition((0..<size).contains(rank), "rank \(rank) is not in a group of \(size)")
        return Member(group: self, rank: rank)
    }

    /// Runs `body(rank, communicator)` on `size` threads and returns their results by rank; the
    /// first error thrown (the failing rank's own, not the others' `aborted`) is rethrown.
    public func run<T>(_ body: @escaping @Sendable (Int, Communicator) throws -> T) throws -> [T] {
        let results = LockedResults<T>(size)
        let done = DispatchGroup()
        for rank in 0..<size {
            // One thread per rank: a pool narrower than the group would deadlock at the first barrier.
            done.enter()
            let member = communicator(rank: rank)
            let thread = Thread {
                do {
                    results.set(rank, .success(try body(rank, member)))
                } catch {
                    member.abort("\(error)")
                    results.set(rank, .failure(error))
                }
                done.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        done.wait()
        return try results.values()
    }

    fileprivate func barrier(_ rank: Int) throws {
        condition.lock()
        defer { condition.unlock() }
        try checkFailure()
        let current = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
            return
        }
        while generation == current, failure == nil { condition.wait() }
        try checkFailure()
    }

    private func checkFailure() throws {
        if let failure { throw CommunicatorError.aborted(rank: failure.rank, reason: failure.reason) }
    }

    fileprivate func fail(_ rank: Int, _ reason: String) {
        condition.lock()
        if failure == nil { failure = (rank, reason) }
        condition.broadcast()
        condition.unlock()
    }

    fileprivate func allReduce<T: FloatingPoint>(_ rank: Int, _ buffer: UnsafeMutableBufferPointer<T>) throws {
        guard size > 1, buffer.count > 0 else { return }  // every rank passes the same count
        contributions[rank] = UnsafeMutableRawPointer(buffer.baseAddress)
        try barrier(rank)
        var sum = [T](repeating: 0, count: buffer.count)
        for other in 0..<size {
            let values = contributions[other]!.assumingMemoryBound(to: T.self)
            for i in 0..<buffer.count { sum[i] += values[i] }
        }
        try barrier(rank)  // everyone has read every buffer
        _ = sum.withUnsafeBufferPointer { buffer.update(fromContentsOf: $0) }
    }

    fileprivate func broadcast(_ rank: Int, _ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard size > 1 else { return }
        contributions[rank] = buffer.baseAddress
        try barrier(rank)
        if rank != root, buffer.count > 0 { buffer.baseAddress!.copyMemory(from: contributions[root]!, byteCount: buffer.count) }
        try barrier(rank)
    }

    private final class Member: Communicator, @unchecked Sendable {
        let group: LocalCommunicatorGroup
        let rank: Int
        init(group: LocalCommunicatorGroup, rank: Int) { (self.group, self.rank) = (group, rank) }
        var size: Int { group.size }
        func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { try group.allReduce(rank, buffer) }
        func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) throws { try group.allReduce(rank, buffer) }
        func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws { try group.broadcast(rank, buffer, root: root) }
        func barrier() throws { try group.barrier(rank) }
        func abort(_ reason: String) { group.fail(rank, reason) }
    }
}

/// Results of the group's threads, by rank.
private final class LockedResults<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<T, Error>?]
    init(_ size: Int) { results = Array(repeating: nil, count: size) }
    func set(_ rank: Int, _ result: Result<T, Error>) { lock.withLock { results[rank] = result } }
    func values() throws -> [T] {
        let all = lock.withLock { results }
        // The failing rank's own error, before the `aborted` of the ranks it woke.
        if let own = all.lazy.compactMap({ r -> Error? in
            if case let .failure(e) = r, !(e is CommunicatorError) { return e }
            return nil
        }).first {
            throw own
        }
        return try all.map { try $0!.get() }
    }
}
