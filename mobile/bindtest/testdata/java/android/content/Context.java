// A stub of Android's android.content.Context, so that the Java gobind
// generates compiles with a plain JDK: go/Seq.java imports it for
// Seq.setContext, which an Android app calls and the host driver never does.
package android.content;

public abstract class Context {
}
