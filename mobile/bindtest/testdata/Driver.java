// Driver drives the real phone SDK (mobile/fieldsync) through gobind's Java
// classes and the host JNI library, as an Android app would, against a real
// syncd the Go test (TestJavaDrivesTheSDK) started. It runs one phase per
// process, so that the Go test can stop and restart the server between
// phases and the replicas are reopened from their files with their keys:
//
//	java Driver enroll  DIR KEY_A KEY_B CODE_A CODE_B
//	java Driver offline DIR KEY_A KEY_B   (the server is down)
//	java Driver online  DIR KEY_A KEY_B   (the server is back)
//
// DIR holds the two replicas (a.db: a member's phone; b.db: the village
// secretary's phone); KEY_* are 32-byte keys in hex, as an app would get
// from Android Keystore; CODE_* are the enrollment codes as a QR scanner
// yields them.
//
// Every result is one line "RESULT <name> <value>" in the file
// DIR/PHASE.results (values are the SDK's JSON as is, or a bare word); the
// Go test parses and checks them. A failure is a line "FAIL <what>" there
// and exit status 1. Not standard output: with -Xcheck:jni the JVM writes
// its warnings there, from any thread, and they would cut into the lines.
// Nothing here checks JSON content: the Go test decodes it into the SDK's
// schema structs.

import org.fieldsync.fieldsync.Client;
import org.fieldsync.fieldsync.Fieldsync;
import org.fieldsync.fieldsync.Listener;

import java.io.FileOutputStream;
import java.io.PrintStream;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;

public class Driver {
	static final long TIMEOUT_MS = 30000;

	static PrintStream out;

	static synchronized void result(String name, String value) {
		// One line per result: the SDK's JSON has no raw newlines.
		out.println("RESULT " + name + " " + value.replace("\n", "\\n"));
		out.flush();
	}

	static synchronized void fail(String what) {
		out.println("FAIL " + what.replace("\n", "\\n"));
		out.flush();
		System.err.println("FAIL " + what);
		System.exit(1);
	}

	static byte[] hex(String s) {
		byte[] b = new byte[s.length() / 2];
		for (int i = 0; i < b.length; i++) {
			b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
		}
		return b;
	}

	// Recorder is the app's listener: it keeps what the SDK tells it. The
	// SDK may call it from a thread of its own (a Go goroutine attached to
	// the JVM by gobind), hence the lock.
	static final class Recorder implements Listener {
		final String who;
		final List<String> data = new ArrayList<>();
		final List<String> dataThreads = new ArrayList<>();
		final List<String> states = new ArrayList<>();

		Recorder(String who) {
			this.who = who;
		}

		@Override
		public synchronized void onDataChanged(String changeJSON) {
			data.add(changeJSON);
			dataThreads.add(Thread.currentThread().getName());
			notifyAll();
		}

		@Override
		public synchronized void onSyncState(String statusJSON) {
			states.add(statusJSON);
			notifyAll();
		}

		// awaitStates waits until the listener has heard more than n
		// statuses, up to ms; it says whether it did.
		synchronized boolean awaitStates(int n, long ms) throws InterruptedException {
			long end = System.currentTimeMillis() + ms;
			while (states.size() <= n) {
				long left = end - System.currentTimeMillis();
				if (left <= 0) {
					return false;
				}
				wait(left);
			}
			return true;
		}

		synchronized int stateCount() {
			return states.size();
		}

		synchronized void report() {
			result(who + ".listener.data_count", Integer.toString(data.size()));
			for (int i = 0; i < data.size(); i++) {
				result(who + ".listener.data." + i, data.get(i));
				result(who + ".listener.data." + i + ".thread", dataThreads.get(i));
			}
			result(who + ".listener.state_count", Integer.toString(states.size()));
			if (!states.isEmpty()) {
				result(who + ".listener.state.last", states.get(states.size() - 1));
			}
		}
	}

	// Call is one SDK call.
	interface Call {
		void run() throws Exception;
	}

	// expectError runs an SDK call that must throw and reports the
	// exception's code (ErrorCode, what an app switches on), its
	// RetryAfterMillis and its message.
	static void expectError(String name, Call call) {
		try {
			call.run();
		} catch (Exception e) {
			String msg = e.getMessage();
			result(name + ".code", Fieldsync.errorCode(msg));
			result(name + ".retry_after_ms", Long.toString(Fieldsync.retryAfterMillis(msg)));
			result(name + ".message", msg);
			return;
		}
		fail(name + ": the call succeeded; it must throw");
	}

	static Client open(String dir, String name, String keyHex, String options) throws Exception {
		return Fieldsync.open(dir + "/" + name + ".db", hex(keyHex), options);
	}

	public static void main(String[] args) throws Exception {
		if (args.length < 4) {
			System.err.println("usage: Driver enroll|offline|online DIR KEY_A KEY_B [CODE_A CODE_B]");
			System.exit(2);
		}
		String phase = args[0], dir = args[1], keyA = args[2], keyB = args[3];
		out = new PrintStream(new FileOutputStream(dir + "/" + phase + ".results"), true, "UTF-8");
		// A short connect timeout: the offline phase must fail fast.
		String options = "{\"app_version\":\"bindtest-driver/1\",\"connect_timeout_ms\":2000}";
		Recorder la = new Recorder("a"), lb = new Recorder("b");
		Client a = open(dir, "a", keyA, options);
		a.setListener(la);
		Client b = open(dir, "b", keyB, options);
		b.setListener(lb);
		boolean aOpen = true;
		switch (phase) {
		case "enroll": {
			result("a.status.before", a.status());
			expectError("a.sync_before_enroll", () -> a.syncOnce(TIMEOUT_MS));
			a.enroll(args[4], "Java phone A (张国华)", TIMEOUT_MS);
			b.enroll(args[5], "Java phone B", TIMEOUT_MS);
			result("a.identity", a.identity());
			result("b.identity", b.identity());
			result("a.sync", a.syncOnce(TIMEOUT_MS));
			result("b.sync", b.syncOnce(TIMEOUT_MS));
			result("a.households", a.list("{\"kind\":\"household\"}"));
			expectError("a.get_missing", () -> a.get("no-such-record"));
			expectError("a.bad_query", () -> a.list("{\"kind\":\"spaceship\"}"));
			break;
		}
		case "offline": {
			// The server is down: writes still work, sync says retry later.
			String today = LocalDate.now(ZoneOffset.UTC).toString();
			String visit = a.recordVisit("H001", today, "张大山及老伴", "屋顶漏雨", "联系村委维修", "下周回访");
			result("a.visit_id", visit);
			a.update("H001", "{\"phone\":\"13800000011\"}");
			b.update("H001", "{\"phone\":\"13800000022\"}");
			result("a.status.offline", a.status());
			expectError("a.sync_offline", () -> a.syncOnce(5000));
			result("a.status.after_failed_sync", a.status());
			break;
		}
		case "online": {
			// The server is back: both phones sync; their edits of H001's
			// phone met, so each holds a conflict; the secretary settles it.
			result("a.sync.1", a.syncOnce(TIMEOUT_MS));
			result("b.sync.1", b.syncOnce(TIMEOUT_MS));
			result("a.sync.2", a.syncOnce(TIMEOUT_MS));
			result("a.visits", a.list("{\"kind\":\"visit\",\"limit\":10}"));
			String month = LocalDate.now(ZoneOffset.UTC).toString().substring(0, 7);
			result("a.my_households", a.myHouseholds(month, 0, 10));
			result("a.conflicts", a.conflicts());
			result("b.conflicts", b.conflicts());
			b.settle("H001", "phone", "13800000033");
			result("b.conflicts.after_settle", b.conflicts());
			result("b.sync.2", b.syncOnce(TIMEOUT_MS));
			result("a.sync.3", a.syncOnce(TIMEOUT_MS));
			result("a.conflicts.after_settle", a.conflicts());
			result("a.h001", a.get("H001"));
			result("a.status.online", a.status());

			// Foreground mode: phone A keeps a connection and hears the
			// server's poke when phone B writes; its listener is called
			// from a thread Go started (gobind attaches it to the JVM). The
			// interval is an hour, so only a poke brings B's write within
			// the wait. A's first foreground sync is awaited first; if the
			// watch stream was not yet listening when B synced, B writes
			// again (at most 4 tries).
			a.close();
			Client fa = open(dir, "a", keyA, "{\"connect_timeout_ms\":2000,\"foreground_interval_ms\":3600000}");
			Recorder lf = new Recorder("fa");
			fa.setListener(lf);
			int states = lf.stateCount();
			fa.startForeground();
			if (!lf.awaitStates(states, 20000)) {
				fail("foreground mode's first sync told the listener nothing in 20 s");
			}
			Thread.sleep(300);
			String phone = "";
			boolean seen = false;
			int tries = 0;
			long start = 0;
			while (!seen && tries < 4) {
				tries++;
				phone = "1390000000" + tries;
				b.update("H002", "{\"phone\":\"" + phone + "\"}");
				b.syncOnce(TIMEOUT_MS);
				start = System.currentTimeMillis();
				while (System.currentTimeMillis() - start < 5000) {
					if (fa.get("H002").contains("\"phone\":\"" + phone + "\"")) {
						seen = true;
						break;
					}
					Thread.sleep(20);
				}
			}
			result("fa.foreground.tries", Integer.toString(tries));
			result("fa.foreground.seen", Boolean.toString(seen));
			result("fa.foreground.wait_ms", Long.toString(System.currentTimeMillis() - start));
			result("fa.foreground.phone", phone);
			result("fa.foreground.h002", fa.get("H002"));
			result("fa.foreground.status", fa.status());
			fa.stopForeground();
			fa.close();
			lf.report();
			aOpen = false;
			break;
		}
		default:
			fail("unknown phase " + phase);
		}
		b.close();
		expectError("b.after_close", () -> b.status());
		if (aOpen) {
			a.close();
		}
		if (phase.equals("enroll")) {
			// A's replica is sealed with KEY_A: B's key, or none, is refused.
			expectError("a.open_wrong_key", () -> Fieldsync.open(dir + "/a.db", hex(keyB), options));
			expectError("a.open_no_key", () -> Fieldsync.open(dir + "/a.db", null, options));
		}
		la.report();
		lb.report();
		result("done", phase);
		// gobind's glue attaches the Go threads that call the listener
		// (foreground mode) to the JVM as non-daemon threads and detaches
		// them only when the thread ends, which Go's threads never do: the
		// JVM would wait for them for ever after main returns. An Android
		// app's process is never ended this way; a host program must exit.
		System.exit(0);
	}
}
