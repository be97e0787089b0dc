// Toy calls testdata/badpkg through gobind's Java and the host JNI library:
// a constructor and a method, the smallest proof that the toolchain works.
import org.fieldsync.badpkg.Counter;

public class Toy {
	public static void main(String[] args) {
		Counter c = new Counter();
		c.add(40);
		System.out.println("sum " + c.add(2));
	}
}
