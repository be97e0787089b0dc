/*
 * A stub of the Android NDK's <android/log.h>, for building gobind's JNI
 * glue (seq_android.c and the package's *_android.c) as a host library on
 * linux/amd64: the glue logs through __android_log_print, which on a phone
 * writes to logcat. Here it writes to stderr, where the Go test shows it.
 * Only what the glue uses is declared.
 */
#ifndef FIELDSYNC_BINDTEST_ANDROID_LOG_H
#define FIELDSYNC_BINDTEST_ANDROID_LOG_H

#include <stdarg.h>
#include <stdio.h>

typedef enum android_LogPriority {
	ANDROID_LOG_UNKNOWN = 0,
	ANDROID_LOG_DEFAULT,
	ANDROID_LOG_VERBOSE,
	ANDROID_LOG_DEBUG,
	ANDROID_LOG_INFO,
	ANDROID_LOG_WARN,
	ANDROID_LOG_ERROR,
	ANDROID_LOG_FATAL,
	ANDROID_LOG_SILENT,
} android_LogPriority;

static inline int __android_log_print(int prio, const char *tag, const char *fmt, ...) {
	va_list ap;
	int n;
	(void)prio;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", tag);
	n = vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return n;
}

#endif
