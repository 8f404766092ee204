// The AWS SDK warns once per process that Node 20 support ends in January 2027; the lock file pins it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
