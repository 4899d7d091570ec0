import CKernels

public enum Threads {
    /// Threads of the C kernels' parallel regions (Kiln's own pool; OpenBLAS runs single-threaded
    /// inside them). Same count + same seed ⇒ bitwise-identical results.
    public static var count: Int {
        get { Int(kn_threads()) }
        set { kn_set_threads(Int32(newValue)) }
    }
}
