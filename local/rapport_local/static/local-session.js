// Served only by `rapport agent-page`: meetings made locally have no Chime media behind them, so the page
// joins a stand-in session that says it started, shows the caller as present, and stops when asked.
window.rapportMeetingSession = (configuration) => {
  const observers = [];
  const presence = [];
  console.info(`rapport agent-page: local meeting ${configuration.meetingId}, no audio`);
  return {
    configuration,
    audioVideo: {
      addObserver: (observer) => observers.push(observer),
      realtimeSubscribeToAttendeeIdPresence: (callback) => presence.push(callback),
      listAudioInputDevices: async () => [],
      startAudioInput: async () => undefined,
      bindAudioElement: async () => undefined,
      start: () =>
        setTimeout(() => {
          observers.forEach((o) => o.audioVideoDidStart && o.audioVideoDidStart());
          presence.forEach((callback) => callback("local-caller", true));
        }, 300),
      stop: () => observers.forEach((o) => o.audioVideoDidStop && o.audioVideoDidStop({})),
      realtimeMuteLocalAudio: () => undefined,
      realtimeUnmuteLocalAudio: () => undefined,
    },
  };
};
