// Package bindtest proves that the phone SDK (mobile/fieldsync) binds: its
// tests run gobind on it for Java and Objective-C and fail on any member
// gobind skips, compile the generated Java with javac, build gobind's JNI
// glue and the SDK as a host shared library (linux/amd64, no Android NDK),
// and run a Java program (testdata/Driver.java) that drives the real SDK
// through JNI against a real syncd.
//
// Nothing imports this package; it holds only tests. Without javac, java
// or a C compiler the JNI tests skip, saying so; with
// FIELDSYNC_REQUIRE_JVM=1 (set by .ci/run) they fail instead.
//
// How the host build differs from `gomobile bind` (and why each step is
// safe):
//
//   - gobind's glue files are named *_android.go / *_android.c, which Go
//     builds only for GOOS=android. The test copies them into a temporary
//     module under *_jni.go / *_jni.c names; the module requires this one
//     through a replace directive and uses this module's go.sum.
//   - __GOBIND_ANDROID__, which gobind's seq.go defines with an
//     `#cgo android CFLAGS` line, is passed in CGO_CFLAGS.
//   - <jni.h> comes from the JDK (include and include/linux);
//     <android/log.h> from testdata/include (a stub writing to stderr), and
//     the -llog of the glue's #cgo LDFLAGS finds testdata/lib/liblog.a, an
//     empty archive. The build is -trimpath with these fixed paths, so the
//     build cache keeps the compiled glue between runs.
//   - OpenJDK's jni.h declares AttachCurrentThread(JavaVM*, void**, void*)
//     where Android's declares JNIEnv**: the glue passes a JNIEnv**, so
//     -Wno-incompatible-pointer-types (the glue builds with -Werror).
//   - go/Seq.java imports android.content.Context for Seq.setContext:
//     testdata/java/android/content/Context.java is an empty stub class.
//   - gobind runs with -javapkg=org.fieldsync, as README's gomobile bind
//     command: the classes are org.fieldsync.fieldsync.{Fieldsync, Client,
//     Listener}.
//   - The Go runtime installs its own SIGSEGV, SIGBUS, SIGFPE and SIGPIPE
//     handlers when the library loads, over HotSpot's: java runs with the
//     JDK's libjsig.so preloaded, HotSpot's documented signal chaining
//     (Android's ART chains them with its libsigchain). java also runs
//     with -Xcheck:jni: a JNI misuse is fatal; its warnings about gobind's
//     glue not checking for exceptions after calls into Java are counted
//     and logged.
//   - gobind attaches the Go threads that call the app's Listener to the
//     JVM as non-daemon threads and never detaches them (Go's threads do
//     not end), so the JVM would not end after main returns: the driver
//     calls System.exit. An Android app's process never ends that way.
//
// The library is built without -race even when the tests run under it: it
// is a separate `go build -buildmode=c-shared` in a subprocess.
package bindtest
